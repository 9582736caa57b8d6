"""The blocking iterators: one task's states (``watch_task``), finished tasks (``as_completed``).

Each is a :class:`~flame.sync._pump.Pump` over the async iterator of the
same name, so what closes the stream or cancels the run is the async code's
own doing: this module only says when.
"""

from __future__ import annotations

import contextlib
import threading
from types import TracebackType

import flame as aio

from .. import Task
from ._caller import Caller
from ._portal import Portal
from ._pump import Pump

__all__ = ["FinishedTasks", "TaskWatcher"]


class TaskWatcher:
    """An iterator over the new states of one task: :meth:`flame.TaskWatcher`, blocking.

    Returned by :meth:`SessionClient.watch_task`. The stream is opened at the
    first ``next`` and closed once the final state has been read, when the
    iteration raises, by :meth:`close`, when leaving ``with``, or when the
    watcher is dropped (``break`` out of ``for update in
    session.watch_task(...)``). A watcher is iterated once, by one thread at
    a time.
    """

    def __init__(self, portal: Portal, watcher: aio.TaskWatcher, owner: object) -> None:
        # Made by SessionClient.watch_task.
        self._portal = portal
        self._watcher = watcher
        self._owner = owner  # the session client: its connection outlives the watch
        self._pump: Pump[Task] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return repr(self._watcher).replace("<TaskWatcher", "<flame.sync.TaskWatcher", 1)

    def __iter__(self) -> TaskWatcher:
        return self

    def __next__(self) -> Task:
        with self._lock:
            pump = self._pump
            if pump is None:
                pump = self._pump = Pump(self._portal, self._watcher)
                pump.open()
        try:
            return pump.next()
        except BaseException:
            # The end, a failure or an interruption: the stream is closed.
            self.close()
            raise

    def close(self) -> None:
        """Stop watching and close the stream; harmless when already closed."""
        pump = self._pump
        if pump is not None:
            pump.exit()

    def __enter__(self) -> TaskWatcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


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


class AsCompleted(contextlib.AbstractContextManager[FinishedTasks]):
    """What :meth:`SessionClient.as_completed` returns: ``with`` it to run the tasks."""

    def __init__(
        self,
        portal: Portal,
        caller: Caller,
        context: contextlib.AbstractAsyncContextManager[aio.FinishedTasks],
        owner: object,
    ) -> None:
        self._pump: Pump[Task] = Pump(portal, context, caller)
        self._owner = owner  # the session client: its connection outlives the run

    def __enter__(self) -> FinishedTasks:
        finished: aio.FinishedTasks = self._pump.open()
        return FinishedTasks(self._pump, finished)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return self._pump.exit(exc_type, exc, tb)
