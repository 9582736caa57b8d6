"""The blocking iterators: one task's states (``watch_task``), finished tasks (``as_completed``).

Each is a :class:`~flame.sync._pump.Pump` over the async iterator of the
same name, so what closes the stream or cancels the run is the async code's
own doing: this module only says when. A method of the async API that gives
an async iterator is made blocking by :class:`BlockingIterator` alone::

    return BlockingIterator(self._portal, self._client.list_tasks(), self)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio

import flame as aio

from .. import Task
from ._caller import Caller
from ._portal import Portal
from ._pump import Pump

__all__ = ["BlockingIterator", "FinishedTasks", "TaskWatcher"]

T = TypeVar("T")
R = TypeVar("R")
_I = TypeVar("_I", bound="BlockingIterator[Any]")


class BlockingIterator(Generic[T]):
    """A plain iterator over an async one, which runs on the portal.

    ``source`` is an async iterator, or an async context manager that gives
    one (a :class:`flame.TaskWatcher` is both: it is used as the latter). It
    is started at the first ``next`` and left once the iteration has ended
    or raised, by :meth:`close`, when leaving ``with``, or when the blocking
    iterator is dropped. One thread at a time iterates it.
    """

    def __init__(
        self,
        portal: Portal,
        source: AsyncIterator[T] | contextlib.AbstractAsyncContextManager[AsyncIterator[T]],
        owner: object,
    ) -> None:
        self._portal = portal
        self._context: contextlib.AbstractAsyncContextManager[AsyncIterator[T]] = (
            source
            if isinstance(source, contextlib.AbstractAsyncContextManager)
            else _closing(source)
        )
        self._owner = owner  # what keeps the connection open while this runs
        self._pump: Pump[T] | None = None
        self._lock = threading.Lock()

    def __iter__(self: _I) -> _I:
        return self

    def __next__(self) -> T:
        with self._lock:
            pump = self._pump
            if pump is None:
                pump = self._pump = Pump(self._portal, self._context)
                pump.open()
        try:
            return pump.next()
        except BaseException:
            # The end, a failure or an interruption: the source is left.
            self.close()
            raise

    def close(self) -> None:
        """Stop iterating and leave the source; harmless when already closed."""
        pump = self._pump
        if pump is not None:
            pump.exit()

    def __enter__(self: _I) -> _I:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.asynccontextmanager
async def _closing(items: AsyncIterator[T]) -> AsyncGenerator[AsyncIterator[T], None]:
    try:
        yield items
    finally:
        close = getattr(items, "aclose", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await close()


class TaskWatcher(BlockingIterator[Task]):
    """An iterator over the new states of one task: :class:`flame.TaskWatcher`, blocking.

    Returned by :meth:`SessionClient.watch_task`. The stream is opened at the
    first ``next`` and closed once the final state has been read, when the
    iteration raises, by ``close()``, when leaving ``with``, or when the
    watcher is dropped (``break`` out of ``for update in
    session.watch_task(...)``). A watcher is iterated once, by one thread at
    a time.
    """

    def __init__(self, portal: Portal, watcher: aio.TaskWatcher, owner: object) -> None:
        # Made by SessionClient.watch_task.
        super().__init__(portal, watcher, owner)
        self._watcher = watcher

    def __repr__(self) -> str:
        return repr(self._watcher).replace("<TaskWatcher", "<flame.sync.TaskWatcher", 1)


class FinishedTasks:
    """The tasks of :meth:`SessionClient.as_completed`, in the order they finish: an iterator.

    Used once, inside the ``with`` that gave it. When every input has been
    run it ends, or raises the run's failure, as :class:`flame.FinishedTasks`
    does.
    """

    def __init__(self, pump: Pump[Task], finished: aio.FinishedTasks) -> None:
        self._pump = pump
        self._finished = finished

    @property
    def taken(self) -> int:
        """How many inputs have been taken so far (each one is, or was, a task)."""
        return self._finished.taken

    def __iter__(self) -> FinishedTasks:
        return self

    def __next__(self) -> Task:
        return self._pump.next()


class AsCompleted(contextlib.AbstractContextManager[R]):
    """What an ``as_completed`` returns: ``with`` it to run the calls.

    ``context`` is the async ``as_completed``; ``results`` makes the blocking
    iterator (:class:`FinishedTasks`, say) of the pump and of what entering
    ``context`` gave.
    """

    def __init__(
        self,
        portal: Portal,
        caller: Caller,
        context: contextlib.AbstractAsyncContextManager[Any],
        owner: object,
        results: Callable[[Pump[Any], Any], R],
    ) -> None:
        self._pump: Pump[Any] = Pump(portal, context, caller)
        self._owner = owner  # the session client: its connection outlives the run
        self._results = results

    def __enter__(self) -> R:
        return self._results(self._pump, self._pump.open())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return self._pump.exit(exc_type, exc, tb)
