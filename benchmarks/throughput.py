"""Throughput of the SDK against the reference client, on one embedded cluster.

Starts ``flame local`` in a separate process, then runs the same work against
it from one client process after another:

* ``flame`` ``session.as_completed`` under asyncio, under asyncio with uvloop,
  and under trio (``flame-asyncio+progress``: with ``progress=`` drawing on
  a terminal console that writes to memory, ten frames a second);
* ``flame-sync``: the same through the blocking API (``flame.sync``, its
  loop on asyncio), the generator of inputs read in the calling thread;
* the reference client ``flamepy`` 0.3.0 (grpcio), doing create then watch per
  task, with the same number in flight.

For each it prints tasks/s, the client's CPU seconds per 1,000 tasks, the
cluster's CPU seconds per 1,000 tasks, and the ratios to the reference. Then
it runs 100,000 tasks with ``concurrency=256`` and compares the client's peak
memory with that of a run ten times smaller: it must not grow with the
number of tasks.

``--wires`` compares instead the client's CPU per task on the v0.4 and v0.6
wires, under asyncio and trio, runs of the two wires alternating for
``--rounds`` rounds. Each wire's server runs in its own process: ``flame
local --wire v0.6`` and ``flame local`` when the embedded cluster speaks
v0.6, else the test servers of the two wires (``tests/v04_server.py``,
``tests/v06_server.py``), which the table says.

    pip install -e '.[bench]'
    python benchmarks/throughput.py                 # the whole table
    python benchmarks/throughput.py --tasks 2000 --skip-memory   # a quick look
    python benchmarks/throughput.py --wires --tasks 5000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

APP = "bench-log"
ECHO_SERVICE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "echo_service.py"
)
TESTS = Path(__file__).resolve().parent.parent / "tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------
# Client side: one run in this process, a JSON line on stdout.


def _report(tasks: int, seconds: float, cpu: float) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "tasks": tasks,
                "seconds": seconds,
                # CPU of the whole process (every thread) during the run only.
                "cpu": cpu,
                # ru_maxrss is KiB on Linux.
                "peak_mib": usage.ru_maxrss / 1024,
            }
        ),
        flush=True,
    )


def run_flame(
    endpoint: str, tasks: int, concurrency: int, backend: str, progress: bool = False
) -> None:
    import io

    import anyio

    import flame

    # Not passed at all when off, so that the same client runs on an SDK without it.
    options = {}
    if progress:
        import rich.console

        console = rich.console.Console(file=io.StringIO(), force_terminal=True, width=120)
        options["progress"] = flame.Progress(total=tasks, console=console)

    async def main() -> None:
        async with await flame.Connection.connect(endpoint) as conn:
            session = await conn.create_session(flame.SessionAttributes(application=APP, slots=1))
            async with session:
                started = time.perf_counter()
                cpu = time.process_time()
                count = 0
                # The iterator form: nothing is kept per finished task.
                inputs = (b"" for _ in range(tasks))
                run = session.as_completed(inputs, concurrency=concurrency, **options)
                async with run as finished:
                    async for task in finished:
                        assert task.state == flame.TaskState.SUCCEED
                        count += 1
                elapsed = time.perf_counter() - started
                cpu = time.process_time() - cpu
            _report(count, elapsed, cpu)

    if backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=backend)


def run_flame_sync(endpoint: str, tasks: int, concurrency: int) -> None:
    import flame
    import flame.sync

    with flame.sync.connect(endpoint) as conn:
        session = conn.create_session(flame.SessionAttributes(application=APP, slots=1))
        with session:
            started = time.perf_counter()
            cpu = time.process_time()
            count = 0
            inputs = (b"" for _ in range(tasks))
            with session.as_completed(inputs, concurrency=concurrency) as finished:
                for task in finished:
                    assert task.state == flame.TaskState.SUCCEED
                    count += 1
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
        _report(count, elapsed, cpu)


def run_flamepy(endpoint: str, tasks: int, concurrency: int) -> None:
    import asyncio

    import flamepy

    async def main() -> None:
        conn = await flamepy.Connection.connect(endpoint)
        session = await conn.create_session(flamepy.SessionAttributes(application=APP, slots=1))
        semaphore = asyncio.Semaphore(concurrency)
        done = 0

        async def one() -> None:
            nonlocal done
            async with semaphore:
                task = await session.create_task(b"")
                watcher = await session.watch_task(task.id)
                async for update in watcher:
                    if update.is_completed():
                        assert update.state == flamepy.TaskState.SUCCEED
                        done += 1
                        break

        started = time.perf_counter()
        cpu = time.process_time()
        # Created lazily in windows, like run_tasks, so memory compares fairly.
        pending: set[asyncio.Task[None]] = set()
        for _ in range(tasks):
            if len(pending) >= concurrency * 2:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            pending.add(asyncio.ensure_future(one()))
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        await session.close()
        await conn.close()
        _report(done, elapsed, cpu)

    asyncio.run(main())


# --------------------------------------------------------------------------
# Driver


def serve_test_server(wire: str, port: int) -> None:
    """Serve the test server of ``wire`` on ``port`` with the application registered, forever."""
    import anyio

    sys.path.insert(0, str(TESTS))
    if wire == "v0.4":
        from v04_server import serve_v04 as serve
    else:
        from v06_server import serve_v06 as serve  # type: ignore[assignment]

    async def main() -> None:
        async with serve(port=port) as server:
            pb = server.frontend.pb if wire != "v0.4" else __import__("v04_server").pb
            shim = pb.Shim.Log if wire == "v0.4" else pb.Shim.Host
            request = pb.RegisterApplicationRequest(
                name=APP, application=pb.ApplicationSpec(shim=shim)
            )
            await server.loop.run(server.frontend.register_application, request)
            await anyio.sleep_forever()

    anyio.run(main)


def local_speaks(wire: str) -> bool:
    """Whether ``flame local`` here can serve ``wire``."""
    if wire == "v0.4":
        return True
    said = subprocess.run(
        [sys.executable, "-m", "flame._cli", "local", "--help"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return "--wire" in said


def start_test_server(port: int, wire: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--as-server", wire, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return _wait_listening(proc, port, f"the {wire} test server")


def start_cluster(port: int, slots: int, wire: str | None = None) -> subprocess.Popen[bytes]:
    config = os.path.join(tempfile.mkdtemp(prefix="flame-bench-"), "flame-conf.yaml")
    with open(config, "w") as f:
        if wire is None:
            f.write(f"applications:\n  - name: {APP}\n    shim: Log\n")
        else:
            # The wires compared run the same service, examples/echo_service.py,
            # through their own contract (v0.4's Grpc shim, v0.6's Host).
            shim = "Grpc" if wire == "v0.4" else "Host"
            f.write(
                f"applications:\n  - name: {APP}\n    shim: {shim}\n"
                f"    command: {json.dumps(sys.executable)}\n"
                f"    arguments: [{json.dumps(ECHO_SERVICE)}]\n"
            )
    command = [
        sys.executable,
        "-m",
        "flame._cli",
        "local",
        "--endpoint",
        f"http://127.0.0.1:{port}",
        "--slots",
        str(slots),
        "--config",
        config,
        "--log-level",
        "warning",
    ]
    if wire is not None:
        command += ["--wire", wire]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return _wait_listening(proc, port, "flame local")


def _wait_listening(proc: subprocess.Popen[bytes], port: int, what: str) -> subprocess.Popen[bytes]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if proc.poll() is not None:
                said = proc.stdout.read().decode() if proc.stdout else ""
                raise SystemExit(f"{what} exited: {said}") from None
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{what} did not start within 30 s")


def one_run(
    client: str, endpoint: str, tasks: int, concurrency: int, cluster: psutil.Process
) -> dict[str, float]:
    before = cluster.cpu_times()
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--as-client",
            client,
            "--endpoint",
            endpoint,
            "--tasks",
            str(tasks),
            "--concurrency",
            str(concurrency),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    after = cluster.cpu_times()
    if out.returncode != 0:
        raise SystemExit(f"client {client} failed:\n{out.stderr}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    result["cluster_cpu"] = (after.user + after.system) - (before.user + before.system)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--memory-tasks", type=int, default=100_000)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--clients",
        default="flame-asyncio,flame-uvloop,flame-trio,flame-sync,flamepy",
        help="comma list",
    )
    parser.add_argument("--wires", action="store_true", help="v0.4 vs v0.6 client CPU per task")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --wires")
    parser.add_argument("--as-client", help=argparse.SUPPRESS)
    parser.add_argument("--as-server", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.as_server:
        serve_test_server(args.as_server, args.port)
        return
    if args.wires:
        compare_wires(args)
        return
    if args.as_client:
        if args.as_client == "flamepy":
            run_flamepy(args.endpoint, args.tasks, args.concurrency)
        elif args.as_client == "flame-sync":
            run_flame_sync(args.endpoint, args.tasks, args.concurrency)
        else:
            form, _, extra = args.as_client.partition("+")
            backend = form.split("-", 1)[1]
            run_flame(args.endpoint, args.tasks, args.concurrency, backend, extra == "progress")
        return

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = start_cluster(port, args.slots)
    cluster = psutil.Process(proc.pid)
    try:
        rows = {}
        for client in args.clients.split(","):
            rows[client] = one_run(client, endpoint, args.tasks, args.concurrency, cluster)
        ref = rows.get("flamepy")
        print(
            f"\n{args.tasks} Log-shim tasks, {args.concurrency} in flight, "
            f"cluster: flame local --slots {args.slots} (own process)\n"
        )
        header = (
            f"{'client':<15}{'tasks/s':>10}{'client CPU s/1k':>17}{'cluster CPU s/1k':>18}"
            f"{'tasks/s vs ref':>16}{'CPU vs ref':>12}"
        )
        print(header)
        print("-" * len(header))
        for name, r in rows.items():
            rate = r["tasks"] / r["seconds"]
            cpu_k = r["cpu"] / r["tasks"] * 1000
            cluster_k = r["cluster_cpu"] / r["tasks"] * 1000
            if ref:
                ref_rate = ref["tasks"] / ref["seconds"]
                ref_cpu = ref["cpu"] / ref["tasks"] * 1000
                ratios = f"{rate / ref_rate:>15.2f}x{cpu_k / ref_cpu:>11.2f}x"
            else:
                ratios = ""
            print(f"{name:<15}{rate:>10.0f}{cpu_k:>17.3f}{cluster_k:>18.3f}{ratios}")
        print("(CPU: every thread of the process, during the run only)")

        if not args.skip_memory:
            small = one_run("flame-asyncio", endpoint, args.memory_tasks // 10, 256, cluster)
            large = one_run("flame-asyncio", endpoint, args.memory_tasks, 256, cluster)
            print(
                f"\nclient peak memory, concurrency=256: "
                f"{args.memory_tasks // 10} tasks {small['peak_mib']:.1f} MiB, "
                f"{args.memory_tasks} tasks {large['peak_mib']:.1f} MiB "
                f"(ratio {large['peak_mib'] / small['peak_mib']:.2f}); "
                f"{large['tasks'] / large['seconds']:.0f} tasks/s"
            )
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def compare_wires(args: argparse.Namespace) -> None:
    """The client's CPU per task on v0.4 and on v0.6, runs alternating, each server on its own."""
    embedded = local_speaks("v0.6")
    servers: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    try:
        for wire in ("v0.4", "v0.6"):
            port = free_port()
            if embedded:
                proc = start_cluster(port, args.slots, wire)
            else:
                proc = start_test_server(port, wire)
            servers[wire] = (f"http://127.0.0.1:{port}", proc)
        cpu: dict[tuple[str, str], list[float]] = {}
        rate: dict[tuple[str, str], list[float]] = {}
        for round_number in range(args.rounds):
            for backend in ("asyncio", "trio"):
                # Alternate which wire goes first, so that drift on a shared
                # machine falls on both alike.
                order = ("v0.4", "v0.6") if round_number % 2 == 0 else ("v0.6", "v0.4")
                for wire in order:
                    endpoint, proc = servers[wire]
                    r = one_run(
                        f"flame-{backend}",
                        endpoint,
                        args.tasks,
                        args.concurrency,
                        psutil.Process(proc.pid),
                    )
                    cpu.setdefault((backend, wire), []).append(r["cpu"] / r["tasks"] * 1000)
                    rate.setdefault((backend, wire), []).append(r["tasks"] / r["seconds"])
        kind = "flame local (own process)" if embedded else "the wire's test server (own process)"
        print(
            f"\n{args.tasks} tasks, {args.concurrency} in flight, {args.rounds} rounds; "
            f"server: {kind}\n"
        )
        header = f"{'backend':<10}{'wire':<7}{'client CPU s/1k (each run)':<36}{'median':>8}"
        header += f"{'tasks/s':>9}{'vs v0.4':>9}"
        print(header)
        print("-" * len(header))
        for backend in ("asyncio", "trio"):
            base = statistics.median(cpu[(backend, "v0.4")])
            for wire in ("v0.4", "v0.6"):
                runs = cpu[(backend, wire)]
                median = statistics.median(runs)
                each = " ".join(f"{value:.3f}" for value in runs)
                print(
                    f"{backend:<10}{wire:<7}{each:<36}{median:>8.3f}"
                    f"{statistics.median(rate[(backend, wire)]):>9.0f}{median / base:>8.2f}x"
                )
        print("(client CPU: every thread of the client process, during the run only)")
    finally:
        for _, proc in servers.values():
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
