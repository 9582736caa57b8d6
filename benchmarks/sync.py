"""What the blocking API costs: ``flame.sync`` against the async API it wraps, same run.

Starts ``flame local`` in its own process (as ``throughput.py`` does), then,
from one client process after another, runs the same tasks through the
async API (``anyio.run`` on asyncio) and through the blocking one
(``flame.sync``, its loop on asyncio on a thread of its own):

* ``run_tasks`` with a list of inputs (the list is read on the loop);
* ``run_tasks`` with a generator of inputs (the blocking API reads it in the
  calling thread, one input per task, handed over between the threads);
* ``as_completed`` with a generator of inputs.

Before that, with no cluster, the cost of one blocking call itself (a
coroutine that returns at once): through flame.sync's portal and through
anyio's ``BlockingPortal``, alternately in the same process.

Each row is run ``--rounds`` times, alternating async and blocking, and the
best of each is kept (the machine is shared: the best is the least
disturbed). It prints the client's CPU seconds per 1,000 tasks (every
thread of the process), tasks/s, and the ratio blocking / async.

    pip install -e '.[bench]'
    python benchmarks/sync.py
    python benchmarks/sync.py --tasks 3000 --rounds 2     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from throughput import APP, _report, free_port, start_cluster

FORMS = ("run_tasks-list", "run_tasks-generator", "as_completed-generator")


def run_async(endpoint: str, tasks: int, concurrency: int, form: str) -> None:
    import anyio

    import flame

    async def main() -> None:
        async with await flame.connect(endpoint) as conn:
            attrs = flame.SessionAttributes(application=APP, slots=1)
            async with await conn.create_session(attrs) as session:
                inputs = [b""] * tasks if form.endswith("list") else (b"" for _ in range(tasks))
                started, cpu = time.perf_counter(), time.process_time()
                if form.startswith("run_tasks"):
                    count = len(await session.run_tasks(inputs, concurrency=concurrency))
                else:
                    count = 0
                    async with session.as_completed(inputs, concurrency=concurrency) as done:
                        async for _ in done:
                            count += 1
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            _report(count, elapsed, cpu)

    anyio.run(main)


def run_sync(endpoint: str, tasks: int, concurrency: int, form: str) -> None:
    import flame
    import flame.sync

    with flame.sync.connect(endpoint) as conn:
        attrs = flame.SessionAttributes(application=APP, slots=1)
        with conn.create_session(attrs) as session:
            inputs = [b""] * tasks if form.endswith("list") else (b"" for _ in range(tasks))
            started, cpu = time.perf_counter(), time.process_time()
            if form.startswith("run_tasks"):
                count = len(session.run_tasks(inputs, concurrency=concurrency))
            else:
                count = 0
                with session.as_completed(inputs, concurrency=concurrency) as done:
                    for _ in done:
                        count += 1
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        _report(count, elapsed, cpu)


def call_costs(calls: int, rounds: int) -> None:
    """Wall and CPU microseconds per blocking call: flame.sync's portal, anyio's."""
    import anyio.from_thread

    from flame.sync._portal import Portal

    async def nothing() -> None:
        return None

    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for name in ("flame.sync", "anyio"):
            if name == "flame.sync":
                portal = Portal()
                call = portal.call
            else:
                context = anyio.from_thread.start_blocking_portal()
                call = context.__enter__().call
            started, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                call(nothing)
            wall = (time.perf_counter() - started) / calls * 1e6
            cpu = (time.process_time() - cpu) / calls * 1e6
            if name == "flame.sync":
                portal.close()
            else:
                context.__exit__(None, None, None)
            if name not in best or cpu < best[name][1]:
                best[name] = (wall, cpu)
    print(f"\none blocking call, best of {rounds} x {calls} (asyncio):")
    for name, (wall, cpu) in best.items():
        print(f"  {name:<12}{wall:>8.1f} us wall{cpu:>8.1f} us CPU")
    print(f"  flame.sync / anyio CPU: {best['flame.sync'][1] / best['anyio'][1]:.2f}x")


def one_run(api: str, form: str, endpoint: str, tasks: int, concurrency: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--as-client", api, "--form", form]
    command += ["--endpoint", endpoint, "--tasks", str(tasks), "--concurrency", str(concurrency)]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"client {api} {form} failed:\n{out.stderr}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5000, help="blocking calls to time")
    parser.add_argument("--as-client", help=argparse.SUPPRESS)
    parser.add_argument("--form", default=FORMS[0], choices=FORMS, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.as_client:
        run = run_sync if args.as_client == "sync" else run_async
        run(args.endpoint, args.tasks, args.concurrency, args.form)
        return

    call_costs(args.calls, args.rounds)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = start_cluster(port, args.slots)
    try:
        best: dict[tuple[str, str], dict[str, float]] = {}
        for _ in range(args.rounds):
            for form in FORMS:
                for api in ("async", "sync"):
                    r = one_run(api, form, endpoint, args.tasks, args.concurrency)
                    assert r["tasks"] == args.tasks, r
                    kept = best.get((api, form))
                    if kept is None or r["cpu"] < kept["cpu"]:
                        best[(api, form)] = r
        print(
            f"\n{args.tasks} Log-shim tasks, {args.concurrency} in flight, best of "
            f"{args.rounds}; cluster: flame local --slots {args.slots} (own process)\n"
        )
        header = (
            f"{'form':<24}{'api':<7}{'client CPU s/1k':>17}{'tasks/s':>10}"
            f"{'CPU blocking/async':>20}"
        )
        print(header)
        print("-" * len(header))
        for form in FORMS:
            base = best[("async", form)]["cpu"]
            for api in ("async", "sync"):
                r = best[(api, form)]
                cpu_k = r["cpu"] / r["tasks"] * 1000
                ratio = f"{r['cpu'] / base:>19.2f}x" if api == "sync" else ""
                rate = r["tasks"] / r["seconds"]
                print(f"{form:<24}{api:<7}{cpu_k:>17.3f}{rate:>10.0f}{ratio}")
        print("(CPU: every thread of the client process, during the run only)")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
