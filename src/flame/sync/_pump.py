"""An async iterator in a context of its own, run on the portal and pulled from a thread.

The blocking iterators (``watch_task``, ``as_completed``) are each one
:class:`Pump`: a job on the portal that enters the async context manager,
takes one item of its iterator each time the calling thread asks for one,
and leaves the context when told to, or when cancelled. One task owns the
async iterator from start to end, so the async code's own rules on leaving
(a watch's stream closed, a run's tasks cancelled) apply as they are; and a
pump dropped without being closed is cancelled without waiting and without
starting anything new: its task leaves the context, and that is all.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio

from ._caller import Caller
from ._portal import Interrupted, Job, Outcome, Portal

__all__ = ["Pump"]

T = TypeVar("T")

ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]

_PULL = object()


class _Driver(Job):
    """The portal's side of a pump: the one task that owns the async iterator."""

    def __init__(
        self, caller: Caller, context: AbstractAsyncContextManager[AsyncIterator[Any]]
    ) -> None:
        super().__init__(caller)
        self._context = context
        self._command: object = None
        self._commanded: anyio.Event | None = None

    def command(self, command: object) -> None:
        """From the calling thread: the next thing to do (one at a time, each answered)."""
        self._command = command
        assert self._portal is not None
        self._portal.soon(self._wake)

    def _wake(self) -> None:
        if self._commanded is not None:
            self._commanded.set()

    async def body(self) -> Any:
        self._commanded = anyio.Event()
        context = self._context
        items = await context.__aenter__()
        try:
            self.answer(Outcome(items))
            while True:
                await self._commanded.wait()
                self._commanded = anyio.Event()
                command = self._command
                if command is not _PULL:
                    exc_info: ExcInfo = command  # type: ignore[assignment]
                    break
                try:
                    outcome = Outcome(await items.__anext__())
                except anyio.get_cancelled_exc_class():
                    raise
                except (KeyboardInterrupt, SystemExit) as exc:
                    outcome = Outcome(error=Interrupted(exc))
                except BaseException as exc:
                    outcome = Outcome(error=exc)
                self.answer(outcome)
        except BaseException:
            # Cancelled (an interrupted or dropped pump, the portal closing).
            if not await context.__aexit__(*sys.exc_info()):
                raise
            return None
        return await context.__aexit__(*exc_info)


class Pump(Generic[T]):
    """The calling thread's handle on an async context manager and its iterator.

    :meth:`open` enters the context (on the portal) and returns what entering
    gave; :meth:`next` takes one item; :meth:`exit` leaves the context, as
    ``__exit__`` would. Each blocks, serving ``caller`` meanwhile. One thread
    at a time uses it (a lock makes others wait). Dropped while open, it is
    cancelled: the context is left, with a cancellation.
    """

    def __init__(
        self,
        portal: Portal,
        context: AbstractAsyncContextManager[AsyncIterator[T]],
        caller: Caller | None = None,
    ) -> None:
        self._portal = portal
        self._caller = caller or Caller(portal)
        self._driver = _Driver(self._caller, context)
        self._lock = threading.Lock()
        self._opened = False
        self._ended = False

    @property
    def opened(self) -> bool:
        """True once :meth:`open` has been called."""
        return self._opened

    @property
    def ended(self) -> bool:
        """True once the context has been left, however."""
        return self._ended

    def open(self) -> Any:
        """Enter the context; what ``__aenter__`` gave."""
        with self._lock:
            self._opened = True
            self._portal.start(self._driver)
            return self._wait()

    def next(self) -> T:
        """The next item; StopIteration at the end, or once the context has been left."""
        with self._lock:
            if self._ended or not self._opened:
                raise StopIteration
            self._driver.command(_PULL)
            try:
                item: T = self._wait()
            except StopAsyncIteration:
                raise StopIteration from None
            return item

    def exit(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> bool | None:
        """Leave the context, giving it the exception the block ended with (if any).

        A KeyboardInterrupt (or another BaseException that is not an
        Exception) is not thrown into the async code, where a task group
        would wrap it: the context is left by cancelling it, as a Ctrl-C
        during a call does, and the interruption is raised again as it is.
        """
        with self._lock:
            if self._ended or not self._opened:
                return None
            if exc is not None and not isinstance(exc, Exception):
                self._ended = True
                self._caller.wait(self._driver, interrupted=exc)
            self._driver.command((exc_type, exc, tb))
            result: bool | None = self._wait()
            return result

    def _wait(self) -> Any:
        try:
            answer = self._caller.wait(self._driver)
        except BaseException:
            # Interrupted: the driver was cancelled, and has ended.
            self._ended = True
            raise
        if answer.final:
            self._ended = True
        return answer.outcome.unwrap()

    def cancel(self) -> None:
        """Leave the context soon, with a cancellation; does not wait (any thread)."""
        if self._opened and not self._ended:
            self._ended = True
            self._driver.cancel()

    def __del__(self) -> None:
        self.cancel()
