"""How fast the embedded cluster runs tasks, seen from another process, on each wire.

Starts ``flame local`` (``python -m flame.local``) in a child process on a free
port, registers an application, and runs ``--tasks`` tasks in one session
with the generated stubs of the cluster's wire over the SDK's transport:
each task is created and then watched to its end, ``--concurrency`` at a
time. Prints tasks per second and the cluster process's CPU seconds per
1,000 tasks (the services' own CPU is not counted).

    python benchmarks/cluster.py [--tasks 10000] [--concurrency 64] [--slots N]
                                 [--storage mem|sqlite|sqlite://PATH[,...]]
                                 [--wire v0.4|v0.6[,...]] [--shim log|service]

``--shim log`` (v0.4 only) runs Log-shim tasks, which cost the cluster
nothing to execute: the figures are the frontend's and the manager's.
``--shim service`` runs an echo service (this file, with ``--as-service``)
through each wire's service contract: the Grpc shim on v0.4, the Host shim
on v0.6, one gRPC call to the service per task either way. ``--wire
v0.4,v0.6 --shim service`` compares the two in the same minute.

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
from types import ModuleType
from typing import Any

import anyio
import psutil

from flame._proto.v04 import flame as v04
from flame._proto.v06.flame import v1 as v06
from flame._transport import Channel

WIRES: dict[str, ModuleType] = {"v0.4": v04, "v0.6": v06}


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


def application(wire: str, shim: str) -> Any:
    """The ApplicationSpec of the benchmark's application, in the wire's terms."""
    pb = WIRES[wire]
    if shim == "log":
        if wire != "v0.4":
            raise SystemExit("--shim log: v0.6 has no Log shim; use --shim service")
        return pb.ApplicationSpec(shim=pb.Shim.Log)
    kind = pb.Shim.Grpc if wire == "v0.4" else pb.Shim.Host
    return pb.ApplicationSpec(
        shim=kind, command=sys.executable, arguments=[os.path.abspath(__file__), "--as-service"]
    )


async def drive(
    endpoint: str, wire: str, shim: str, tasks: int, concurrency: int, cpu: psutil.Process
) -> tuple[float, float]:
    """Run the tasks; tasks per second and cluster CPU seconds per 1,000 tasks."""
    pb = WIRES[wire]
    async with await Channel.connect(endpoint) as channel:
        stub = pb.FrontendStub(channel)
        result = await channel.unary(
            stub.register_application,
            pb.RegisterApplicationRequest(name="bench", application=application(wire, shim)),
        )
        assert result.return_code == 0, result
        if wire == "v0.4":
            request = pb.CreateSessionRequest(session=pb.SessionSpec(application="bench", slots=1))
        else:
            request = pb.CreateSessionRequest(
                session_id="bench", session=pb.SessionSpec(application="bench")
            )
        session = await channel.unary(stub.create_session, request)
        session_id = session.metadata.id

        async def run_one() -> None:
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

        # The services start (and the connection warms up) before the clock does.
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(run_one)
        left = tasks
        done = 0

        async def worker() -> None:
            nonlocal left, done
            while left > 0:
                left -= 1
                await run_one()
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
        assert final.status.succeed == tasks + concurrency, final
        used = (after.user - before.user) + (after.system - before.system)
        print(f"{done} {shim} tasks on {wire}, {concurrency} in flight, in {elapsed:.2f} s")
        print(f"tasks/s: {done / elapsed:,.0f}")
        print(f"cluster CPU seconds per 1,000 tasks: {used / done * 1000:.3f}")
        client = (mine_after.user - mine.user) + (mine_after.system - mine.system)
        print(f"(client CPU seconds per 1,000 tasks: {client / done * 1000:.3f})")
        return done / elapsed, used / done * 1000


# --------------------------------------------------------------------------
# The echo service of --shim service


def serve_echo() -> None:
    """Answer each task with its input, on the contract the executor speaks."""
    if os.environ.get("FLAME_INSTANCE_ENDPOINT"):
        anyio.run(_serve_instance, os.environ["FLAME_INSTANCE_ENDPOINT"])
        return
    from flame.service import FlameService, TaskContext, run

    class Echo(FlameService):
        async def on_task_invoke(self, ctx: TaskContext) -> bytes | None:
            return ctx.input

    run(Echo())


async def _serve_instance(path: str) -> None:
    from flame._transport import open_grpc_loop, serve

    class Instance(v06.InstanceBase):  # type: ignore[misc]
        async def on_session_enter(self, message: Any) -> Any:
            return v06.Result(return_code=0)

        async def on_task_invoke(self, message: Any) -> Any:
            return v06.TaskResult(return_code=0, output=message.input)

        async def on_session_leave(self, message: Any) -> Any:
            return v06.Result(return_code=0)

    loop = open_grpc_loop()
    try:
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async with serve(loop, [Instance()], path=path):
                async for _ in signals:
                    return
    finally:
        await loop.aclose()


# --------------------------------------------------------------------------
# Driver


def main() -> None:
    if "--as-service" in sys.argv:
        serve_echo()
        return
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
        "--wire",
        default="v0.4",
        help="the wire the cluster speaks: v0.4 (default) or v0.6; both, comma-separated, "
        "are run in turn and compared with the first",
    )
    parser.add_argument(
        "--shim",
        choices=("log", "service"),
        default="log",
        help="log (v0.4: no service) or service (an echo service through each wire's contract)",
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
    for wire in args.wire.split(","):
        for storage in args.storage.split(","):
            results[f"{wire}, {storage}"] = run_one(wire, storage, args, options)
    if len(results) > 1:
        (base, (base_rate, base_cpu)), *others = results.items()
        for name, (rate, cpu) in others:
            print(
                f"{name} against {base}: {rate / base_rate:.2f}x the tasks/s, "
                f"{cpu / base_cpu:.2f}x the cluster CPU per task"
            )


def run_one(
    wire: str, storage: str, args: argparse.Namespace, options: dict[str, Any]
) -> tuple[float, float]:
    folder = tempfile.TemporaryDirectory(prefix="flame-bench-")
    if storage == "sqlite":
        storage = f"sqlite://{Path(folder.name) / 'flame.db'}"
    database = Path(storage.removeprefix("sqlite://")) if storage.startswith("sqlite://") else None
    if database is not None and database.exists():
        raise SystemExit(f"{database} exists: give a new file, or --storage sqlite")
    # The command line has no storage option: the config file says it.
    config = Path(folder.name) / "flame-conf.yaml"
    config.write_text(f"storage: {storage}\nwire: {wire}\n")
    print(f"wire: {wire}, storage: {storage}")
    port = free_port()
    process = start_cluster(port, args.slots, config)
    try:
        return anyio.run(
            drive,
            f"http://127.0.0.1:{port}",
            wire,
            args.shim,
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
