"""How fast the embedded cluster runs Log-shim tasks, seen from another process.

Starts ``flame local`` (``python -m flame.local``) in a child process on a free
port, registers a Log-shim application, and runs ``--tasks`` tasks in one
session with the generated stubs over the SDK's transport: each task is
created and then watched to its end, ``--concurrency`` at a time. Prints
tasks per second and the cluster process's CPU seconds per 1,000 tasks.

    python benchmarks/cluster.py [--tasks 10000] [--concurrency 64] [--slots N]
                                 [--storage mem|sqlite|sqlite://PATH[,...]]

``--storage sqlite`` keeps the cluster's state in a new database file in a
temporary directory; ``sqlite://PATH`` names a file, which must not exist yet
(the run registers its application afresh). With sqlite storage every call is
answered once its change is committed, so a task created or seen finished
survives a crash of the cluster: ``--storage mem,sqlite`` runs one after the
other and prints what that costs, against memory storage, in the same minute.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import psutil

from flame._proto.v04 import flame as pb
from flame._transport import Channel


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cluster(port: int, slots: int, config: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flame.local",
            "--endpoint",
            f"http://127.0.0.1:{port}",
            "--slots",
            str(slots),
            "--config",
            str(config),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "serving on" not in line:
        process.kill()
        raise SystemExit(f"the cluster did not start: {line!r}")
    return process


async def drive(
    endpoint: str, tasks: int, concurrency: int, cpu: psutil.Process
) -> tuple[float, float]:
    """Run the tasks; tasks per second and cluster CPU seconds per 1,000 tasks."""
    async with await Channel.connect(endpoint) as channel:
        stub = pb.FrontendStub(channel)
        result = await channel.unary(
            stub.register_application,
            pb.RegisterApplicationRequest(name="bench", application=pb.ApplicationSpec()),
        )
        assert result.return_code == 0, result
        session = await channel.unary(
            stub.create_session,
            pb.CreateSessionRequest(session=pb.SessionSpec(application="bench", slots=1)),
        )
        session_id = session.metadata.id
        left = tasks
        done = 0

        async def worker() -> None:
            nonlocal left, done
            while left > 0:
                left -= 1
                task = await channel.unary(
                    stub.create_task,
                    pb.CreateTaskRequest(task=pb.TaskSpec(session_id=session_id, input=b"ping")),
                )
                request = pb.WatchTaskRequest(task_id=task.metadata.id, session_id=session_id)
                async with channel.stream(stub.watch_task, request) as updates:
                    last = None
                    async for update in updates:
                        last = update
                assert last is not None and last.status.state == pb.TaskState.Succeed, last
                done += 1

        me = psutil.Process()
        before, mine = cpu.cpu_times(), me.cpu_times()
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        elapsed = time.perf_counter() - started
        after, mine_after = cpu.cpu_times(), me.cpu_times()
        final = await channel.unary(stub.get_session, pb.GetSessionRequest(session_id=session_id))
        assert final.status.succeed == tasks, final
        used = (after.user - before.user) + (after.system - before.system)
        print(f"{done} Log-shim tasks, {concurrency} in flight, in {elapsed:.2f} s")
        print(f"tasks/s: {done / elapsed:,.0f}")
        print(f"cluster CPU seconds per 1,000 tasks: {used / done * 1000:.3f}")
        client = (mine_after.user - mine.user) + (mine_after.system - mine.system)
        print(f"(client CPU seconds per 1,000 tasks: {client / done * 1000:.3f})")
        return done / elapsed, used / done * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument(
        "--storage",
        default="mem",
        help="the cluster's storage: mem (default), sqlite (a new file), or sqlite://PATH; "
        "several, comma-separated, are run in turn and compared with the first",
    )
    parser.add_argument(
        "--no-uvloop", action="store_true", help="drive with asyncio's own loop, not uvloop"
    )
    args = parser.parse_args()
    options = {}
    if args.backend == "asyncio" and not args.no_uvloop:
        try:
            import uvloop  # noqa: F401

            options["use_uvloop"] = True
        except ImportError:
            pass
    results = {}
    for storage in args.storage.split(","):
        results[storage] = run_one(storage, args, options)
    if len(results) > 1:
        (base, (base_rate, base_cpu)), *others = results.items()
        for storage, (rate, cpu) in others:
            print(
                f"{storage} against {base}: {rate / base_rate:.2f}x the tasks/s, "
                f"{cpu / base_cpu:.2f}x the cluster CPU per task"
            )


def run_one(storage: str, args: argparse.Namespace, options: dict[str, Any]) -> tuple[float, float]:
    folder = tempfile.TemporaryDirectory(prefix="flame-bench-")
    if storage == "sqlite":
        storage = f"sqlite://{Path(folder.name) / 'flame.db'}"
    database = Path(storage.removeprefix("sqlite://")) if storage.startswith("sqlite://") else None
    if database is not None and database.exists():
        raise SystemExit(f"{database} exists: give a new file, or --storage sqlite")
    # The command line has no storage option: the config file says it.
    config = Path(folder.name) / "flame-conf.yaml"
    config.write_text(f"storage: {storage}\n")
    print(f"storage: {storage}")
    port = free_port()
    process = start_cluster(port, args.slots, config)
    try:
        return anyio.run(
            drive,
            f"http://127.0.0.1:{port}",
            args.tasks,
            args.concurrency,
            psutil.Process(process.pid),
            backend=args.backend,
            backend_options=options,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if database is not None and database.exists():
            print(f"database: {database.stat().st_size / 1e6:.1f} MB after the cluster stopped")
        folder.cleanup()


if __name__ == "__main__":
    main()
