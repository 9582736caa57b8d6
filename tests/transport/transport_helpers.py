"""Helpers of the transport tests: a Frontend that records what its handlers saw.

The handlers run on the grpc loop (asyncio, in a worker thread under trio), so
they report with ``threading.Event``; the test side polls those events with
:func:`wait_until`, whose bound only guards against a hang and is not a timing
assertion.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import grpclib.const
import pytest

from flame._proto.v04 import flame as pb

#: How long a test waits for something that must happen; only a hang guard.
BOUND = 10.0


async def wait_until(predicate: Callable[[], bool], what: str, bound: float = BOUND) -> None:
    """Poll ``predicate`` until it holds; fail the test saying ``what`` if it never does."""
    with anyio.move_on_after(bound):
        # The events are set on another thread: polling is the portable way.
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.005)
        return
    pytest.fail(f"{what} did not happen within {bound} s")


class Seen:
    """What one handler call saw: it started, it ended, and how."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.ended = threading.Event()
        self.how: str | None = None

    def finish(self, how: str) -> None:
        self.how = how
        self.ended.set()


class Frontend(pb.FrontendBase):
    """GetTask answers or holds; WatchTask streams, holds or floods.

    ``task_id`` picks the behaviour: ``"hold"`` waits until cancelled,
    ``"flood"`` streams without end, anything else answers at once. Every
    call is recorded where grpclib runs it, around the generated handler, so
    a :class:`Seen` ends exactly when the server's task for the call ends.
    """

    def __init__(self) -> None:
        self.calls: list[Seen] = []
        self.flooded = 0

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            path: handler._replace(func=self._recorded(handler.func))
            for path, handler in super().__mapping__().items()
        }

    def _recorded(self, func: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        async def handle(stream: Any) -> None:
            seen = Seen()
            self.calls.append(seen)
            seen.entered.set()
            how = "returned"
            try:
                await func(stream)
            except asyncio.CancelledError:
                how = "cancelled"
                raise
            except BaseException as exc:
                how = f"raised {type(exc).__name__}"
                raise
            finally:
                seen.finish(how)

        return handle

    async def get_task(self, message: pb.GetTaskRequest) -> pb.Task:
        if message.task_id == "hold":
            await anyio.sleep_forever()
        return pb.Task(
            metadata=pb.Metadata(id=message.task_id),
            spec=pb.TaskSpec(session_id=message.session_id),
        )

    async def watch_task(self, message: pb.WatchTaskRequest) -> AsyncIterator[pb.Task]:
        if message.task_id == "flood":
            while True:
                # grpclib sends without yielding while the window is open; a
                # handler that never yields would starve its loop, and the
                # reset that ends the call could not even be read.
                await anyio.lowlevel.checkpoint()
                self.flooded += 1
                yield pb.Task(metadata=pb.Metadata(id=str(self.flooded)))
        for state in (pb.TaskState.Pending, pb.TaskState.Running, pb.TaskState.Succeed):
            if message.task_id == "hold" and state is pb.TaskState.Running:
                await anyio.sleep_forever()
            yield pb.Task(
                metadata=pb.Metadata(id=message.task_id), status=pb.TaskStatus(state=state)
            )
