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

from flame._proto.v04 import flame as pb
from flame.local._sessions import SessionManager
from flame.local._storage import MemoryStorage

try:
    from flame.local._sqlite import SqliteStorage
except ImportError:  # an older checkout
    from flame.local._storage import SqliteStorage  # type: ignore[attr-defined,no-redef]


def _manager(storage: Any) -> tuple[SessionManager, Any]:
    manager = SessionManager(storage, capacity=4, max_message_bytes=1 << 20)
    assert manager.register_application("bench", pb.ApplicationSpec(shim=pb.Shim.Log)) is None
    session = manager.create_session(pb.SessionSpec(application="bench"))
    return manager, manager.runtime(session.metadata.id)


async def _run(storage: Any, tasks: int, group: int, watch: bool) -> float:
    manager, rt = _manager(storage)
    session_id = str(rt.id)
    flush = getattr(storage, "flush", None)
    data = b"x" * 64
    gc.collect()
    started = time.process_time()
    async with anyio.create_task_group() as tg:
        for n in range(1, tasks + 1):
            task = manager.create_task(pb.TaskSpec(session_id=session_id, input=data))
            if watch:
                updates = manager.watch_task(task.metadata.id, session_id)
                tg.start_soon(_drain, updates)
                await anyio.lowlevel.checkpoint()
            taken = manager.take_task(rt)
            assert taken is not None
            manager.finish_task(rt, *taken, True, data)
            if flush is not None and n % group == 0:
                flush()
            if watch:
                await anyio.lowlevel.checkpoint()
    elapsed = time.process_time() - started
    manager.stop()
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
