"""The session manager's own cost per task, in this process, without the network.

Runs the hot path of the embedded cluster (create a task, hand it to an
executor, finish it) ``--tasks`` times on a SessionManager, with memory
storage and with sqlite storage committed every ``--group`` tasks (a group
commit shared by the calls of the same few milliseconds), and prints the
CPU microseconds per task of each, the best of ``--repeat`` runs (CPU time,
so that other processes on the machine count less). With ``--watch``, each
task also has a watcher told of its states.

    python benchmarks/manager.py [--tasks 20000] [--group 1,8,64,512] [--watch] [--repeat 3]

Runs against whichever ``flame`` is importable: to compare two checkouts,
run it with ``PYTHONPATH=<checkout>/src`` for each, in the same minute.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from flame.local._sessions import SessionManager
from flame.local._storage import MemoryStorage

try:
    from flame.local._sqlite import SqliteStorage
except ImportError:  # an older checkout
    from flame.local._storage import SqliteStorage  # type: ignore[attr-defined,no-redef]

try:
    from flame.local import _model
except ImportError:  # a checkout whose manager took v0.4's messages
    _model = None  # type: ignore[assignment]


class _Driver:
    """The hot path of the manager, through the API of the checkout it runs on."""

    def __init__(self, storage: Any) -> None:
        self.manager = manager = SessionManager(storage, capacity=4, max_message_bytes=1 << 20)
        if _model is not None:
            app = _model.Application(name="bench", shim=_model.Shim.LOG)
            manager.save_application(app)
            self.rt = manager.create_session(
                manager.next_session_id(), _model.SessionSpec(application="bench"), app
            )
        else:
            from flame._proto.v04 import flame as pb

            self.pb = pb
            assert manager.register_application("bench", pb.ApplicationSpec()) is None
            session = manager.create_session(pb.SessionSpec(application="bench"))
            self.rt = manager.runtime(session.metadata.id)

    def create(self, data: bytes) -> Any:
        if _model is not None:
            return self.manager.create_task(self.rt, data)
        spec = self.pb.TaskSpec(session_id=str(self.rt.id), input=data)
        return self.manager.create_task(spec)

    def watch(self, task: Any) -> Any:
        if _model is not None:
            return _watch(self.manager, task)
        return self.manager.watch_task(task.metadata.id, str(self.rt.id))

    def run(self, data: bytes) -> None:
        taken = self.manager.take_task(self.rt)
        assert taken is not None
        if _model is not None:
            self.manager.finish_task(self.rt, taken, True, data)
        else:
            self.manager.finish_task(self.rt, *taken, True, data)


async def _watch(manager: Any, task: Any) -> Any:
    with manager.watch(task) as watch:
        while True:
            states = await watch.next()
            yield states
            if any(state in _model.FINAL_STATES for state in states):
                return


async def _run(storage: Any, tasks: int, group: int, watch: bool) -> float:
    driver = _Driver(storage)
    flush = getattr(storage, "flush", None)
    data = b"x" * 64
    gc.collect()
    started = time.process_time()
    async with anyio.create_task_group() as tg:
        for n in range(1, tasks + 1):
            task = driver.create(data)
            if watch:
                tg.start_soon(_drain, driver.watch(task))
                await anyio.lowlevel.checkpoint()
            driver.run(data)
            if flush is not None and n % group == 0:
                flush()
            if watch:
                await anyio.lowlevel.checkpoint()
    elapsed = time.process_time() - started
    driver.manager.stop()
    return elapsed / tasks * 1e6


async def _drain(updates: Any) -> None:
    async for _ in updates:
        pass


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--group", default="1,8,64,512", help="tasks per sqlite commit")
    parser.add_argument("--watch", action="store_true", help="a watcher per task")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best is shown")
    args = parser.parse_args()
    groups = [int(g) for g in args.group.split(",")]
    results: dict[str, float] = {}
    for _ in range(args.repeat):
        micros = await _run(MemoryStorage(), args.tasks, 1, args.watch)
        results["mem"] = min(results.get("mem", micros), micros)
        for group in groups:
            name = f"sqlite, a commit per {group} task(s)"
            with tempfile.TemporaryDirectory(prefix="flame-bench-") as folder:
                storage = SqliteStorage(Path(folder) / "flame.db")
                micros = await _run(storage, args.tasks, group, args.watch)
            results[name] = min(results.get(name, micros), micros)
    watched = ", each watched" if args.watch else ""
    print(
        f"{args.tasks} tasks created, run and finished in process{watched} "
        f"(CPU, best of {args.repeat}):"
    )
    for name, micros in results.items():
        print(f"  {name:34} {micros:7.1f} µs per task")


if __name__ == "__main__":
    anyio.run(main)
