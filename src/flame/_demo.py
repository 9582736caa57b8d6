"""``flame demo``: estimate pi with many short tasks, the job Flame is for.

It starts an embedded cluster in this process (or connects to ``--endpoint``),
registers the pi service shipped in the package (:mod:`flame._demo_service`,
run by the Grpc shim), opens a session, runs ``--tasks`` tasks spread over the
executors while a progress bar moves, and prints the estimate, the tasks per
second and the wall time.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import time
from typing import TextIO

import anyio

from . import _demo_service
from ._connection import Connection, connect
from ._errors import FlameError, FlameErrorCode
from ._session import Session
from ._types import ApplicationAttributes, SessionAttributes, Shim

__all__ = ["configure", "run"]

APPLICATION = "flame-demo-pi"
DEFAULT_TASKS = 1000
DEFAULT_SAMPLES = 20_000


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tasks",
        type=_positive,
        default=DEFAULT_TASKS,
        help=f"how many tasks to run (default {DEFAULT_TASKS})",
    )
    parser.add_argument(
        "--samples",
        type=_positive,
        default=DEFAULT_SAMPLES,
        help=f"random points each task draws (default {DEFAULT_SAMPLES:,})",
    )
    parser.add_argument(
        "--slots",
        type=_positive,
        default=None,
        help="executor slots of the embedded cluster (default: the number of CPUs)",
    )
    parser.add_argument(
        "--endpoint",
        default=None,
        help="use the running cluster at this address instead of starting one; it must "
        "run on this machine (it starts this Python to run the service)",
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="the event loop the client runs on (default asyncio)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="first random seed; task i uses seed+i (default 0)"
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not above 0")
    return value


def run(args: argparse.Namespace) -> int:
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
    async with await connect(endpoint) as conn:
        await _register(conn)
        attributes = SessionAttributes(application=APPLICATION, slots=1)
        async with await conn.create_session(attributes) as session:
            begun = time.perf_counter()
            inside, samples = await _run_tasks(session, args, executors)
            elapsed = time.perf_counter() - begun
    wall = time.perf_counter() - started
    estimate = 4.0 * inside / samples
    print(f"pi ~= {estimate:.6f} (error {abs(estimate - math.pi):.6f}) from {samples:,} points")
    print(f"{args.tasks} tasks in {elapsed:.2f} s: {args.tasks / elapsed:,.1f} tasks/s")
    print(f"wall time {wall:.2f} s, start to end (cluster start and session close included)")


async def _register(conn: Connection) -> None:
    """Register the pi service, or reuse the registration a previous run left."""
    attributes = ApplicationAttributes(
        shim=Shim.GRPC,
        command=sys.executable,
        arguments=["-m", _demo_service.__name__],
    )
    existing = {app.name: app for app in await conn.list_applications()}
    if APPLICATION in existing:
        app = existing[APPLICATION]
        if (app.shim, app.command, list(app.arguments or [])) == (
            attributes.shim,
            attributes.command,
            attributes.arguments,
        ):
            return
        # Left by a run with another Python: replace it.
        await conn.unregister_application(APPLICATION)
    await conn.register_application(APPLICATION, attributes)


async def _run_tasks(
    session: Session, args: argparse.Namespace, executors: int | None
) -> tuple[int, int]:
    """Run every task, a bounded number at a time; the summed (inside, samples)."""
    inputs = (
        _demo_service.encode_task(args.seed + index, args.samples) for index in range(args.tasks)
    )
    # Enough tasks in flight to keep every executor busy while the client
    # handles the answers of others; not so many that the watches pile up.
    concurrency = max(32, 4 * (executors or 8))
    inside = samples = 0
    progress = _Progress(args.tasks, sys.stderr)
    try:
        async with session.as_completed(inputs, concurrency=concurrency) as finished:
            async for task in finished:
                task_inside, task_samples = _demo_service.decode_result(task.output)
                if task_samples != args.samples:
                    raise FlameError(
                        FlameErrorCode.INTERNAL,
                        f"task {task.id} sampled {task_samples} points, "
                        f"not the {args.samples} asked for",
                    )
                inside += task_inside
                samples += task_samples
                progress.advance()
    finally:
        progress.close()
    return inside, samples


class _Progress:
    """A one-line progress bar on a terminal; silent when the stream is not one."""

    WIDTH = 30
    #: Seconds between two redraws: a fast run must not spend its time drawing.
    REDRAW = 0.1

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.started = time.perf_counter()
        self.drawn_at = 0.0
        self.live = stream.isatty()

    def advance(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if self.live and (now - self.drawn_at >= self.REDRAW or self.done == self.total):
            self.drawn_at = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        filled = self.WIDTH * self.done // self.total
        rate = self.done / max(now - self.started, 1e-9)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} tasks, {rate:,.0f}/s ")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
