"""Under trio, who should read the connection: the waiting callers, or a task of its own?

The SDK's trio connection is read by the callers that wait on it (one holds
the read turn and hands it on; see ``flame._transport._trio``). The other
design is a reader task that runs for the connection's life, in a nursery
that owns it. The SDK cannot use that one as its API stands (``await
flame.connect()`` returns an open connection, and no scope of the caller's
is sure to outlive it), but it is the design to beat, so this script builds
it on the same socket and protocol code and runs the same work with both.

Starts ``flame local`` in a separate process, then runs, in this process,
``session.as_completed`` over Log-shim tasks with 64 in flight, alternately
with each design (each first in every other round), and prints the client's
CPU seconds per 1,000 tasks and the tasks per second of every run, then
their medians.

    pip install -e '.[bench]'
    python benchmarks/trio_reading.py                 # 5 rounds of 5,000 tasks
    python benchmarks/trio_reading.py --tasks 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

# The script's own directory is on the path: throughput.py's cluster helpers.
from throughput import APP, free_port, start_cluster

import flame
from flame._transport import _trio


class ScopedReader(_trio.TrioConnection):
    """The same connection, read by a task of its own; callers only wait."""

    async def park(self, waiter: Any) -> None:
        try:
            while not waiter.done():
                await self._sleep(waiter)
        except BaseException:
            if waiter.state == 0:
                waiter.state = 2
            raise

    def catch_up(self) -> None:
        return None  # the reader is always there

    async def read_forever(self) -> None:
        sock = self._sock
        while not self.closed:
            if self._unsent:
                await trio.lowlevel.wait_writable(sock)
                del self._unsent[: sock.send(self._unsent)]
                continue
            try:
                data = sock.recv(_trio.RECEIVE_BYTES)
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_readable(sock)
                except trio.ClosedResourceError:
                    return
                continue
            self._take(data)
            await trio.lowlevel.checkpoint()


@asynccontextmanager
async def scoped_readers() -> AsyncIterator[None]:
    """For the ``async with``, connections are ScopedReaders, their readers in one nursery."""
    connect = _trio.connect

    async with trio.open_nursery() as nursery:

        async def connect_scoped(endpoint: Any, context: Any, **settings: Any) -> Any:
            plain = await connect(endpoint, context, **settings)
            plain.__class__ = ScopedReader
            nursery.start_soon(plain.read_forever)
            return plain

        _trio.connect = connect_scoped  # type: ignore[assignment]
        try:
            yield
        finally:
            _trio.connect = connect
            nursery.cancel_scope.cancel()


async def one_run(endpoint: str, tasks: int, concurrency: int) -> tuple[float, float]:
    async with await flame.connect(endpoint) as conn:
        session = await conn.create_session(flame.SessionAttributes(application=APP, slots=1))
        async with session:
            await session.run_tasks([b""] * 100, concurrency=concurrency)  # warm-up
            started = time.perf_counter()
            cpu = time.process_time()
            async with session.as_completed(
                (b"" for _ in range(tasks)), concurrency=concurrency
            ) as finished:
                async for _ in finished:
                    pass
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
    return cpu / tasks * 1000, tasks / elapsed


async def main(endpoint: str, tasks: int, concurrency: int, rounds: int) -> None:
    results: dict[str, list[tuple[float, float]]] = {"callers read": [], "reader task": []}

    async def callers_read() -> None:
        results["callers read"].append(await one_run(endpoint, tasks, concurrency))

    async def reader_task() -> None:
        async with scoped_readers():
            results["reader task"].append(await one_run(endpoint, tasks, concurrency))

    for round_ in range(rounds):
        # Each goes first in every other round: neither gains from the order.
        for run in (callers_read, reader_task) if round_ % 2 == 0 else (reader_task, callers_read):
            await run()
    print(f"\n{tasks} Log-shim tasks per run, {concurrency} in flight, under trio\n")
    print(f"{'design':<14}{'client CPU s/1k, tasks/s (each run)':<58}{'medians':>16}")
    for name, runs in results.items():
        each = "  ".join(f"{cpu:.3f} {rate:.0f}" for cpu, rate in runs)
        cpu = statistics.median(cpu for cpu, _ in runs)
        rate = statistics.median(rate for _, rate in runs)
        print(f"{name:<14}{each:<58}{cpu:>8.3f}{rate:>8.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()
    port = free_port()
    proc = start_cluster(port, args.slots)
    try:
        trio.run(main, f"http://127.0.0.1:{port}", args.tasks, args.concurrency, args.rounds)
    finally:
        proc.terminate()
        proc.wait(10)
