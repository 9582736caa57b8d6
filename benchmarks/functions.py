"""What a function session costs per call, against raw-bytes tasks on the same cluster.

Starts ``flame local`` in a process of its own, with an application whose
service (this file, run with ``--as-service``) answers each task with its
input: bytes in, bytes out, nothing pickled. Then one client process per
backend (asyncio, trio) runs, round after round, so that all three see the
same machine:

* ``raw``: ``session.run_tasks`` over ``--tasks`` inputs of 16 bytes, in a
  session of that echo application;
* ``flow``: the same through ``session.as_completed``, which ``f.map`` is
  built on (each task handed over as it finishes): the part of the
  difference that is not the function layer's;
* ``map``: ``f.map(range(tasks))`` in a function session of ``lambda x: x``
  (cloudpickled arguments and values, the generic service, a worker thread
  per call).

Each with ``--concurrency`` calls in flight, through the Grpc shim, in a
session opened for the round and warmed up first (one session at a time, so
that executors are not moved between them while measuring). It prints the
medians of tasks/s, the client's CPU µs per task and the cluster's CPU µs per
task (its services included), the difference per call of ``map``, which is
what the function layer costs, and how long each session took to give its
first result: open a raw session and run one task, against
``function_session`` (whose probe task starts the service) and one call.

    python benchmarks/functions.py                      # 5 rounds of 2,000 tasks each
    python benchmarks/functions.py --tasks 500 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil

APP = "bench-echo"
KINDS = ("raw", "flow", "map")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------
# The echo service (run by the cluster)


def serve_echo() -> None:
    from flame.service import FlameService, TaskContext, run

    class Echo(FlameService):
        def on_task_invoke(self, ctx: TaskContext) -> bytes | None:
            return ctx.input

    run(Echo())


# --------------------------------------------------------------------------
# Client side: every round of one backend in this process, a JSON line on stdout.


def run_client(args: argparse.Namespace) -> None:
    import anyio

    import flame

    tasks, concurrency = args.tasks, args.concurrency
    cluster = psutil.Process(args.cluster_pid)

    def cluster_cpu() -> float:
        # The cluster, the services it has reaped, and those still running.
        times = cluster.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for process in cluster.children(recursive=True):
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    async def measured(run: Any) -> dict[str, float]:
        served, cpu, started = cluster_cpu(), time.process_time(), time.perf_counter()
        await run()
        return {
            "seconds": time.perf_counter() - started,
            "cpu": time.process_time() - cpu,
            "cluster_cpu": cluster_cpu() - served,
        }

    async def main() -> dict[str, Any]:
        inputs = [i.to_bytes(16, "big") for i in range(tasks)]
        warm_up = 2 * concurrency
        runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
        opened: dict[str, list[float]] = {"raw": [], "map": []}
        async with await flame.connect(args.endpoint) as conn:
            for _ in range(args.rounds):
                # One session at a time, so that the executors stay with it:
                # opened, warmed up (every executor's service started), measured.
                begun = time.perf_counter()
                attributes = flame.SessionAttributes(application=APP, slots=1)
                async with await conn.create_session(attributes) as session:
                    await session.run_task(b"first")
                    opened["raw"].append(time.perf_counter() - begun)
                    await session.run_tasks(inputs[:warm_up], concurrency=concurrency)

                    async def raw() -> None:
                        done = await session.run_tasks(inputs, concurrency=concurrency)
                        assert done[-1].output == inputs[-1]

                    async def flow() -> None:
                        seen = 0
                        async with session.as_completed(inputs, concurrency=concurrency) as ended:
                            async for task in ended:
                                seen += task.output is not None
                        assert seen == tasks

                    runs["raw"].append(await measured(raw))
                    runs["flow"].append(await measured(flow))
                begun = time.perf_counter()
                async with await conn.function_session(lambda x: x, slots=1) as f:
                    await f(0)
                    opened["map"].append(time.perf_counter() - begun)
                    await f.map(range(warm_up), concurrency=concurrency)

                    async def mapped() -> None:
                        values = await f.map(range(tasks), concurrency=concurrency)
                        assert values[-1] == tasks - 1

                    runs["map"].append(await measured(mapped))
        return {"opened": opened, "runs": runs}

    print(json.dumps(anyio.run(main, backend=args.as_client)), flush=True)


# --------------------------------------------------------------------------
# Driver


def start_cluster(port: int, slots: int) -> subprocess.Popen[bytes]:
    config = os.path.join(tempfile.mkdtemp(prefix="flame-bench-"), "flame-conf.yaml")
    with open(config, "w") as f:
        f.write(
            f"applications:\n  - name: {APP}\n    shim: Grpc\n"
            f"    command: {sys.executable}\n"
            f"    arguments: [{os.path.abspath(__file__)!r}, --as-service]\n"
        )
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "flame._cli", "local"),
            *("--endpoint", f"http://127.0.0.1:{port}", "--slots", str(slots)),
            *("--config", config, "--log-level", "warning"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if proc.poll() is not None:
                said = proc.stdout.read().decode() if proc.stdout else ""
                raise SystemExit(f"flame local exited: {said}") from None
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("flame local did not start within 30 s")


def one_client(backend: str, args: argparse.Namespace, endpoint: str, pid: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            *(sys.executable, __file__, "--as-client", backend, "--endpoint", endpoint),
            *("--tasks", str(args.tasks), "--concurrency", str(args.concurrency)),
            *("--rounds", str(args.rounds), "--cluster-pid", str(pid)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"client ({backend}) failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    def median(backend: str, kind: str, figure: str) -> float:
        runs = results[backend]["runs"][kind]
        return statistics.median(run[figure] / args.tasks for run in runs)

    print(
        f"\n{args.tasks} tasks per run, {args.concurrency} in flight, median of {args.rounds} "
        f"round(s); cluster: flame local --slots {args.slots} (own process), Grpc shim\n"
    )
    header = (
        f"{'backend':<9}{'kind':<6}{'tasks/s':>9}{'client CPU µs/task':>20}"
        f"{'cluster CPU µs/task':>21}"
    )
    print(header)
    print("-" * len(header))
    for backend in results:
        for kind in KINDS:
            rate = 1 / median(backend, kind, "seconds")
            client = median(backend, kind, "cpu") * 1e6
            served = median(backend, kind, "cluster_cpu") * 1e6
            print(f"{backend:<9}{kind:<6}{rate:>9.0f}{client:>20.0f}{served:>21.0f}")
    for over in ("raw", "flow"):
        print(f"\nper call, map over {over}:")
        for backend in results:
            wall, client, served = (
                (median(backend, "map", figure) - median(backend, over, figure)) * 1e6
                for figure in ("seconds", "cpu", "cluster_cpu")
            )
            print(
                f"  {backend}: {wall:+.0f} µs wall, {client:+.0f} µs client CPU, "
                f"{served:+.0f} µs cluster and service CPU"
            )
    print("\nfirst result, median s (raw: open, one task; function: function_session, one call):")
    for backend, result in results.items():
        raw, function = (statistics.median(result["opened"][kind]) for kind in ("raw", "map"))
        print(f"  {backend}: raw {raw:.2f}, function {function:.2f}, {function - raw:+.3f}")
    print("(CPU: every thread of each process, during the calls only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backends", default="asyncio,trio")
    parser.add_argument("--as-client", help=argparse.SUPPRESS)
    parser.add_argument("--as-service", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--cluster-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.as_service:
        serve_echo()
        return
    if args.as_client:
        run_client(args)
        return

    port = free_port()
    proc = start_cluster(port, args.slots)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        results = {
            backend: one_client(backend, args, endpoint, proc.pid)
            for backend in args.backends.split(",")
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    report(results, args)


if __name__ == "__main__":
    main()
