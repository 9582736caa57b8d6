"""What a function session costs per call, against raw-bytes tasks on the same cluster.

Starts ``flame local`` in a process of its own, with an application whose
service (this file, run with ``--as-service``) answers each task with its
input: bytes in, bytes out, nothing pickled. Then, from one client process
after another, alternating so that both see the same machine:

* ``raw``: ``session.run_tasks`` over ``--tasks`` inputs of 16 bytes, in a
  session of that echo application;
* ``flow``: the same through ``session.as_completed``, which ``f.map`` is
  built on (each task handed over to the loop as it finishes): the part of
  the difference that is not the function layer's;
* ``map``: ``f.map(range(tasks))`` in a function session of ``lambda x: x``
  (cloudpickled arguments and values, the generic service, a worker thread
  per call).

Both go through the Grpc shim, with ``--concurrency`` calls in flight, under
asyncio and trio. For each it prints tasks/s, the client's CPU µs per task,
the cluster's CPU µs per task (its services included), and the seconds the
session took to give its first result (raw: open it and run one task;
map: ``function_session``, whose probe task starts the service). Then the
difference per call, which is what the function layer costs.

    python benchmarks/functions.py                      # 3 rounds of 3,000 tasks each
    python benchmarks/functions.py --tasks 1000 --rounds 1
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
# Client side: one run in this process, a JSON line on stdout.


def run_client(kind: str, endpoint: str, tasks: int, concurrency: int, backend: str) -> None:
    import anyio

    import flame

    async def main() -> dict[str, float]:
        async with await flame.connect(endpoint) as conn:
            begun = time.perf_counter()
            if kind in ("raw", "flow"):
                attributes = flame.SessionAttributes(application=APP, slots=1)
                async with await conn.create_session(attributes) as session:
                    await session.run_task(b"first")
                    opened = time.perf_counter() - begun
                    inputs = [i.to_bytes(16, "big") for i in range(tasks)]
                    cpu = time.process_time()
                    started = time.perf_counter()
                    if kind == "raw":
                        done = await session.run_tasks(inputs, concurrency=concurrency)
                        assert done[-1].output == inputs[-1]
                    else:
                        seen = 0
                        async with session.as_completed(inputs, concurrency=concurrency) as flow:
                            async for task in flow:
                                seen += task.output is not None
                        assert seen == tasks
                    elapsed = time.perf_counter() - started
                    cpu = time.process_time() - cpu
            else:
                async with await conn.function_session(lambda x: x, slots=1) as f:
                    opened = time.perf_counter() - begun
                    cpu = time.process_time()
                    started = time.perf_counter()
                    values = await f.map(range(tasks), concurrency=concurrency)
                    elapsed = time.perf_counter() - started
                    cpu = time.process_time() - cpu
                    assert values[-1] == tasks - 1
        return {"tasks": tasks, "seconds": elapsed, "cpu": cpu, "opened": opened}

    print(json.dumps(anyio.run(main, backend=backend)), flush=True)


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


def cluster_cpu(cluster: psutil.Process) -> float:
    # The services are the cluster's children: their CPU counts once reaped.
    times = cluster.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def one_run(
    kind: str, backend: str, endpoint: str, tasks: int, concurrency: int, cluster: psutil.Process
) -> dict[str, float]:
    before = cluster_cpu(cluster)
    out = subprocess.run(
        [
            *(sys.executable, __file__, "--as-client", kind, "--backend", backend),
            *("--endpoint", endpoint, "--tasks", str(tasks), "--concurrency", str(concurrency)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    # The session's services stop once it is closed: let them be reaped.
    time.sleep(1.0)
    if out.returncode != 0:
        raise SystemExit(f"client {kind} ({backend}) failed:\n{out.stderr}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    # Opening, the first task and the services' start-up are in this too.
    result["cluster_cpu"] = cluster_cpu(cluster) - before
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="asyncio,trio")
    parser.add_argument("--as-client", help=argparse.SUPPRESS)
    parser.add_argument("--as-service", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.as_service:
        serve_echo()
        return
    if args.as_client:
        run_client(args.as_client, args.endpoint, args.tasks, args.concurrency, args.backend)
        return

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = start_cluster(port, args.slots)
    cluster = psutil.Process(proc.pid)
    backends = args.backends.split(",")
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for _ in range(args.rounds):
            for backend in backends:
                for kind in KINDS:
                    result = one_run(kind, backend, endpoint, args.tasks, args.concurrency, cluster)
                    runs.setdefault((backend, kind), []).append(result)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

    def median(backend: str, kind: str, figure: str) -> float:
        return statistics.median(run[figure] / run["tasks"] for run in runs[(backend, kind)])

    print(
        f"\n{args.tasks} tasks per run, {args.concurrency} in flight, median of {args.rounds} "
        f"round(s); cluster: flame local --slots {args.slots} (own process), Grpc shim\n"
    )
    header = (
        f"{'backend':<9}{'kind':<6}{'tasks/s':>9}{'client CPU µs/task':>20}"
        f"{'cluster CPU µs/task':>21}{'first result s':>16}"
    )
    print(header)
    print("-" * len(header))
    for backend in backends:
        for kind in KINDS:
            rate = 1 / median(backend, kind, "seconds")
            client = median(backend, kind, "cpu") * 1e6
            served = median(backend, kind, "cluster_cpu") * 1e6
            opened = statistics.median(run["opened"] for run in runs[(backend, kind)])
            print(f"{backend:<9}{kind:<6}{rate:>9.0f}{client:>20.0f}{served:>21.0f}{opened:>16.2f}")
    for over in ("raw", "flow"):
        print(f"\nper call, map over {over}:")
        for backend in backends:
            wall, client, served = (
                (median(backend, "map", figure) - median(backend, over, figure)) * 1e6
                for figure in ("seconds", "cpu", "cluster_cpu")
            )
            print(
                f"  {backend}: {wall:+.0f} µs wall, {client:+.0f} µs client CPU, "
                f"{served:+.0f} µs cluster and service CPU"
            )
    print("(CPU: every thread of the process, during the calls only; cluster: the whole run)")


if __name__ == "__main__":
    main()
