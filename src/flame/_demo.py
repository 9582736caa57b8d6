"""``flame demo``: estimate pi with many short tasks, the job Flame is for.

It starts an embedded cluster in this process (or connects to ``--endpoint``),
opens a function session of :func:`count_inside`, a plain Python function
(:meth:`flame.Connection.function_session`: no service to write, the SDK's
generic one runs it), calls it ``--tasks`` times spread over the executors
while the SDK's progress display (``progress=``) moves, and prints the
estimate, the tasks per second and the wall time.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import random
import sys
import time
from typing import TYPE_CHECKING

import anyio

from ._connection import connect
from ._errors import FlameError
from ._progress import Progress

if TYPE_CHECKING:
    from .functions import FunctionSession

__all__ = ["DEFAULT_SAMPLES", "DEFAULT_TASKS", "MAX_SAMPLES", "count_inside", "run"]

DEFAULT_TASKS = 1000
DEFAULT_SAMPLES = 20_000
#: The largest batch one task may draw (about a minute of one core).
MAX_SAMPLES = 200_000_000


def count_inside(seed: int, samples: int) -> int:
    """How many of ``samples`` random points of the unit square fall in the quarter circle.

    The demo's task, as a plain function. Four times the sum over the calls,
    divided by the points drawn, estimates pi. Each call seeds its own
    generator with ``seed``, so a run gives the same estimate on any number
    of executors.
    """
    draw = random.Random(seed).random
    inside = 0
    # The plainest loop is the fastest in pure Python (no numpy here).
    for _ in range(samples):
        x = draw()
        y = draw()
        if x * x + y * y < 1.0:
            inside += 1
    return inside


def run(args: argparse.Namespace) -> int:
    """Run the demo with the options ``flame demo`` parsed; the exit status."""
    if args.endpoint is not None and args.slots is not None:
        print(
            "flame demo: --slots applies to the embedded cluster, not to --endpoint",
            file=sys.stderr,
        )
        return 2
    if args.backend == "trio" and importlib.util.find_spec("trio") is None:
        print(
            "flame demo: --backend trio needs trio: pip install 'flame-sdk[trio]'", file=sys.stderr
        )
        return 2
    try:
        anyio.run(_demo, args, backend=args.backend)
    except FlameError as exc:
        print(f"flame demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("flame demo: interrupted", file=sys.stderr)
        return 130
    return 0


async def _demo(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    if args.endpoint is not None:
        await _run_on(args.endpoint, args, started, executors=None)
        return
    from .local import LocalCluster

    slots = args.slots if args.slots is not None else (os.cpu_count() or 1)
    async with LocalCluster(slots=slots) as cluster:
        print(
            f"embedded cluster at {cluster.endpoint} with {slots} executor slot(s)", file=sys.stderr
        )
        await _run_on(cluster.endpoint, args, started, executors=slots)


async def _run_on(
    endpoint: str, args: argparse.Namespace, started: float, executors: int | None
) -> None:
    async with (
        await connect(endpoint) as conn,
        await conn.function_session(count_inside) as estimate,
    ):
        begun = time.perf_counter()
        inside = await _count(estimate, args, executors)
        elapsed = time.perf_counter() - begun
    wall = time.perf_counter() - started
    samples = args.tasks * args.samples
    estimate_of_pi = 4.0 * inside / samples
    print(
        f"pi ~= {estimate_of_pi:.6f} (error {abs(estimate_of_pi - math.pi):.6f}) "
        f"from {samples:,} points"
    )
    print(f"{args.tasks} tasks in {elapsed:.2f} s: {args.tasks / elapsed:,.1f} tasks/s")
    print(f"wall time {wall:.2f} s, start to end (cluster start and session close included)")


async def _count(
    estimate: FunctionSession[[int, int], int], args: argparse.Namespace, executors: int | None
) -> int:
    """Call the function once per task, a bounded number at a time; the summed counts."""
    calls = ((args.seed + index, args.samples) for index in range(args.tasks))
    # Enough calls in flight to keep every executor busy while the client
    # handles the answers of others; not so many that the watches pile up.
    concurrency = max(32, 4 * (executors or 8))
    inside = 0
    # Drawn on stderr when it is a terminal, as any run_tasks can be.
    progress = Progress("estimating pi", total=args.tasks)
    run = estimate.as_completed(calls, star=True, concurrency=concurrency, progress=progress)
    async with run as results:
        async for _index, count in results:
            inside += count
    return inside
