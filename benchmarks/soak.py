"""A few minutes of mixed load on ``flame local`` with retention on: does its memory stay flat?

Starts ``flame local`` (``python -m flame.local``) in a child process with
``--storage`` and retention (``--max-closed`` closed sessions, kept at most
``--max-age``), then runs ``--workers`` clients for ``--minutes``, each in a
loop: create a session, run ``--tasks`` Log-shim tasks in it (create, watch to
the end, some read again), close it, and delete every fifth session itself
(retention prunes the others). Prints the cluster's resident memory, open
descriptors, sessions held and database size at the start, every
``--every`` seconds, and at the end, with the end against the start.

    python benchmarks/soak.py [--minutes 3] [--storage sqlite|mem] [--workers 8]
                              [--tasks 20] [--max-closed 50] [--max-age 30s] [--every 20]
                              [--no-retention]
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

import anyio
import psutil

from flame._proto.v04 import flame as pb
from flame._transport import Channel


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cluster(port: int, config: Path, args: argparse.Namespace) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flame.local",
            "--endpoint",
            f"http://127.0.0.1:{port}",
            "--config",
            str(config),
            *(
                ()
                if args.no_retention
                else (
                    "--retention-max-closed",
                    str(args.max_closed),
                    "--retention-max-age",
                    args.max_age,
                )
            ),
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


class Totals:
    def __init__(self) -> None:
        self.sessions = 0
        self.tasks = 0


async def worker(channel: Channel, stub: pb.FrontendStub, tasks: int, totals: Totals) -> None:
    n = 0
    while True:
        n += 1
        session = await channel.unary(
            stub.create_session,
            pb.CreateSessionRequest(session=pb.SessionSpec(application="soak", slots=1)),
        )
        session_id = session.metadata.id
        for i in range(tasks):
            task = await channel.unary(
                stub.create_task,
                pb.CreateTaskRequest(
                    task=pb.TaskSpec(session_id=session_id, input=b"soak %d" % i * 8)
                ),
            )
            request = pb.WatchTaskRequest(task_id=task.metadata.id, session_id=session_id)
            async with channel.stream(stub.watch_task, request) as updates:
                async for _ in updates:
                    pass
            if i % 5 == 0:
                await channel.unary(
                    stub.get_task,
                    pb.GetTaskRequest(task_id=task.metadata.id, session_id=session_id),
                )
            totals.tasks += 1
        await channel.unary(stub.close_session, pb.CloseSessionRequest(session_id=session_id))
        if n % 5 == 0:
            await channel.unary(stub.delete_session, pb.DeleteSessionRequest(session_id=session_id))
        totals.sessions += 1


def sample(cluster: psutil.Process, database: Path | None, held: int) -> dict[str, float]:
    size = 0.0
    if database is not None:
        for end in ("", "-wal"):
            path = Path(f"{database}{end}")
            if path.exists():
                size += path.stat().st_size
    return {
        "rss": cluster.memory_info().rss / 1e6,
        "fds": float(cluster.num_fds()),
        "held": float(held),
        "db": size / 1e6,
    }


def line(label: str, totals: Totals, figures: dict[str, float]) -> str:
    return (
        f"{label:>8}  RSS {figures['rss']:7.1f} MB  fds {figures['fds']:4.0f}  "
        f"sessions held {figures['held']:5.0f}  db {figures['db']:6.1f} MB  "
        f"(done: {totals.sessions} sessions, {totals.tasks} tasks)"
    )


async def soak(
    endpoint: str, cluster: psutil.Process, database: Path | None, args: argparse.Namespace
) -> None:
    totals = Totals()
    async with await Channel.connect(endpoint) as channel:
        stub = pb.FrontendStub(channel)
        result = await channel.unary(
            stub.register_application,
            pb.RegisterApplicationRequest(name="soak", application=pb.ApplicationSpec()),
        )
        assert result.return_code == 0, result

        async def held() -> int:
            listed = await channel.unary(stub.list_session, pb.ListSessionRequest())
            return len(listed.sessions)

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(args.workers):
                tg.start_soon(worker, channel, stub, args.tasks, totals)
            # The first figures once the load is running (imports and caches warm).
            await anyio.sleep(min(10.0, args.minutes * 60 / 6))
            first = sample(cluster, database, await held())
            print(line("start", totals, first), flush=True)
            deadline = started + args.minutes * 60
            while time.monotonic() < deadline:
                await anyio.sleep(min(args.every, max(0.0, deadline - time.monotonic())))
                figures = sample(cluster, database, await held())
                elapsed = time.monotonic() - started
                print(line(f"{elapsed:5.0f} s", totals, figures), flush=True)
            tg.cancel_scope.cancel()
        last = sample(cluster, database, await held())
        print(line("end", totals, last))
        elapsed = time.monotonic() - started
        print(f"{totals.tasks / elapsed:,.0f} tasks/s over {elapsed:.0f} s")
        print(
            f"RSS end/start: {last['rss'] / first['rss']:.2f} "
            f"({last['rss'] - first['rss']:+.1f} MB); descriptors {last['fds'] - first['fds']:+.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--storage", choices=("sqlite", "mem"), default="sqlite")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=20, help="tasks per session")
    parser.add_argument(
        "--max-closed", type=int, default=50, help="retention: closed sessions kept"
    )
    parser.add_argument(
        "--max-age", default="30s", help="retention: how long a closed session is kept"
    )
    parser.add_argument("--every", type=float, default=20.0, help="seconds between reports")
    parser.add_argument(
        "--no-retention", action="store_true", help="keep every session, for a comparison"
    )
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    folder = tempfile.TemporaryDirectory(prefix="flame-soak-")
    database = Path(folder.name) / "flame.db" if args.storage == "sqlite" else None
    config = Path(folder.name) / "flame-conf.yaml"
    storage = "mem" if database is None else f"sqlite://{database}"
    config.write_text(f"storage: {storage}\n")
    retention = (
        "none"
        if args.no_retention
        else f"{args.max_closed} closed sessions, for {args.max_age} at most"
    )
    print(
        f"storage: {storage}; retention: {retention}; "
        f"{args.workers} workers, {args.tasks} tasks per session, {args.minutes:g} minutes"
    )
    port = free_port()
    process = start_cluster(port, config, args)
    try:
        anyio.run(soak, f"http://127.0.0.1:{port}", psutil.Process(process.pid), database, args)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        folder.cleanup()


if __name__ == "__main__":
    main()
