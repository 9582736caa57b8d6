"""Telling a :class:`TaskInformer` about tasks: the one way it is done.

``run_task`` with an informer, ``run_tasks`` and ``as_completed`` all hand
their updates and errors to an :class:`Informing`: a bounded stream, read by
one task that calls the informer's methods one at a time, in order. A slow
informer holds the tasks back only once the stream is full; an exception it
raises stops the run (how is the runner's to say) and is raised as it is.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel

from ._errors import FlameError
from ._types import Task, _invalid

__all__ = ["INFORMER_BUFFER", "Informing", "TaskInformer", "check_informer", "inform"]

#: How many updates the tasks may get ahead of a slow informer.
INFORMER_BUFFER = 16


class TaskInformer:
    """Told about a task that :meth:`SessionClient.run_task` runs.

    Subclass it and override what you need; each method may be a plain or an
    ``async`` function. Both run in the task that called ``run_task``, one
    call at a time, in the order of the task's updates.
    """

    def on_update(self, task: Task) -> Any:
        """Called with every new state of the task, the finished one included."""

    def on_error(self, error: FlameError) -> Any:
        """Called once when running the task failed, just before ``error`` is raised."""


async def inform(method: Callable[[Any], Any], argument: Any) -> None:
    """Call an informer's ``method``, plain or ``async``."""
    result = method(argument)
    if inspect.isawaitable(result):
        await result


def check_informer(informer: object) -> TaskInformer | None:
    """``informer`` if it can be told (None stays None); FlameError INVALID_ARGUMENT if not."""
    if informer is None:
        return None
    for method in ("on_update", "on_error"):
        if not callable(getattr(informer, method, None)):
            raise _invalid(
                f"informer {type(informer).__name__} has no {method}(); "
                "give a TaskInformer (or an object with on_update and on_error)"
            )
    return informer  # type: ignore[return-value]


class Informing:
    """The updates and errors for one informer, in order, through a bounded stream.

    Run :meth:`run` in a task of the runner's group; send with :meth:`update`
    and :meth:`error`; :meth:`finish` when nothing more will come (what is
    buffered is still told). If the informer raises, ``stop`` is called with
    the exception, and nothing more is told.
    """

    def __init__(
        self, informer: TaskInformer, buffer: int, stop: Callable[[BaseException], None]
    ) -> None:
        self._informer = informer
        self._stop = stop
        self._send, self._receive = anyio.create_memory_object_stream[tuple[bool, Any]](buffer)

    async def run(self) -> None:
        informer = self._informer
        with self._receive:
            async for is_error, value in self._receive:
                try:
                    await inform(informer.on_error if is_error else informer.on_update, value)
                except Exception as exc:
                    self._stop(exc)
                    return

    async def update(self, task: Task) -> None:
        await self._put((False, task))

    async def error(self, error: FlameError) -> None:
        await self._put((True, error))

    def finish(self) -> None:
        self._send.close()

    async def _put(self, note: tuple[bool, Any]) -> None:
        try:
            await self._send.send(note)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # The informer failed and stopped reading: the run is being stopped.
            await anyio.lowlevel.checkpoint()
