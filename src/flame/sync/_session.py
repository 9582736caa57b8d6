"""Sessions and their tasks, blocking: :class:`flame.SessionClient` and :class:`flame.Session`.

Each method is the async one, called on the portal: same arguments, same
checks, same errors. A method is added here in two lines, the second being
``return self._portal.call(partial(self._client.method, ...))``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Iterable
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

import flame as aio

from .. import (
    DEFAULT_CONCURRENCY,
    FlameError,
    FlameErrorCode,
    ProgressOption,
    SessionID,
    SessionState,
    Task,
    TaskID,
    TaskInformer,
    TaskInput,
)
from ._caller import Caller
from ._iterators import AsCompleted, FinishedTasks, TaskWatcher
from ._portal import Portal

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from ._connection import Connection

__all__ = ["Session", "SessionClient", "bind"]

log = logging.getLogger("flame.sync")


class SessionClient:
    """Runs and watches the tasks of one session: :class:`flame.SessionClient`, blocking.

    Get one from :meth:`Connection.session_client` (or
    ``SessionClient(conn, session_id)``) when only the id is known;
    :meth:`Connection.create_session` and :meth:`Connection.get_session`
    return a :class:`Session`, which is a ``SessionClient`` too. A context
    manager: leaving the ``with`` closes the session.

    User code given to :meth:`run_tasks`, :meth:`as_completed` and
    :meth:`run_task` (an iterable of inputs, an informer) runs in the calling
    thread, while it is inside the call (see :mod:`flame.sync`).
    """

    _client: aio.SessionClient
    _connection: Connection
    _portal: Portal

    def __init__(self, connection: Connection, session_id: SessionID) -> None:
        from ._connection import Connection  # it imports this module

        if not isinstance(connection, Connection):
            raise FlameError(
                FlameErrorCode.INVALID_ARGUMENT,
                f"connection must be a flame.sync.Connection, not {type(connection).__name__}",
            )
        made = connection.session_client(session_id)
        self._client, self._connection, self._portal = made._client, connection, made._portal

    @property
    def id(self) -> SessionID:
        """The session's id."""
        return self._client.id

    def __repr__(self) -> str:
        return f"<flame.sync.SessionClient of session {self.id} on {self._connection.endpoint}>"

    def create_task(self, input_data: TaskInput) -> Task:
        """Add a task with ``input_data`` (bytes): :meth:`flame.SessionClient.create_task`."""
        return self._portal.call(partial(self._client.create_task, input_data))

    def get_task(self, task_id: TaskID) -> Task:
        """The task ``task_id`` as it is now: :meth:`flame.SessionClient.get_task`."""
        return self._portal.call(partial(self._client.get_task, task_id))

    def watch_task(self, task_id: TaskID) -> TaskWatcher:
        """Follow the task ``task_id``: an iterator of its new states, to its final one::

            for update in session.watch_task(task.id):
                print(update.state)

        :meth:`flame.SessionClient.watch_task`, blocking; ``with
        session.watch_task(task.id) as updates:`` closes the stream at a
        known point.
        """
        return TaskWatcher(self._portal, self._client.watch_task(task_id), self)

    def run_task(
        self,
        input_data: TaskInput,
        informer: TaskInformer | None = None,
        *,
        check: bool = False,
    ) -> Task:
        """Create a task, wait for its end, and return it: :meth:`flame.SessionClient.run_task`.

        The task comes back in its final state, ``FAILED`` included, unless
        ``check=True`` has that raised. The informer's methods run in the
        calling thread.
        """
        caller = Caller(self._portal)
        run = partial(self._client.run_task, input_data, caller.informer(informer), check=check)
        return self._portal.call(run, caller)

    def run_tasks(
        self,
        inputs: Iterable[TaskInput] | AsyncIterable[TaskInput],
        *,
        informer: TaskInformer | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        fail_fast: bool = True,
        progress: ProgressOption = None,
    ) -> list[Task]:
        """Run a task for each of ``inputs``; all of them, finished, in input order.

        :meth:`flame.SessionClient.run_tasks`, blocking: the same laziness,
        ``fail_fast``, informer and errors. An iterable of inputs that is not
        a list or tuple is read in the calling thread, one input at a time,
        when a task needs one; the informer's methods run there too. Ctrl-C
        (KeyboardInterrupt) cancels the tasks in flight and closes their
        watches before it is raised.

        ``progress`` is that of the async API (see :class:`flame.Progress`):
        ``progress=True`` draws done, failed, rate and time left on stderr
        when it is a terminal, and closes the display when the call returns
        or is interrupted; a progress callback runs in the calling thread::

            tasks = session.run_tasks(inputs, progress="resizing")
        """
        caller = Caller(self._portal)
        run = partial(
            self._client.run_tasks,
            caller.inputs(inputs),
            informer=caller.informer(informer),
            concurrency=concurrency,
            fail_fast=fail_fast,
            progress=caller.progress(progress, inputs),
        )
        return self._portal.call(run, caller)

    def as_completed(
        self,
        inputs: Iterable[TaskInput] | AsyncIterable[TaskInput],
        *,
        informer: TaskInformer | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        fail_fast: bool = True,
        progress: ProgressOption = None,
    ) -> AbstractContextManager[FinishedTasks]:
        """Run a task for each of ``inputs``; iterate the tasks as they finish::

            with session.as_completed(inputs, concurrency=64) as finished:
                for task in finished:
                    print(task.id, task.output)

        :meth:`flame.SessionClient.as_completed`, blocking: memory bounded by
        ``concurrency``, the run owned by the ``with`` (leaving it cancels
        what is in flight), the same checks (made here), ``fail_fast`` and
        errors. The inputs and the informer run in the calling thread, while
        it is in ``next`` (or entering or leaving the ``with``): a body that
        takes long keeps at most one task's place idle meanwhile.
        ``progress`` is that of :meth:`run_tasks`, shown for the ``with``.
        """
        caller = Caller(self._portal)
        shown = caller.progress(progress, inputs)
        inputs, informer = caller.inputs(inputs), caller.informer(informer)

        async def start() -> Any:
            # On the loop: the run's primitives belong to its event loop.
            return self._client.as_completed(
                inputs,
                informer=informer,
                concurrency=concurrency,
                fail_fast=fail_fast,
                progress=shown,
            )

        return AsCompleted(self._portal, caller, self._portal.call(start), self, FinishedTasks)

    def close(self) -> Session:
        """Close the session and return it: :meth:`flame.SessionClient.close`."""
        return bind(self._connection, self._portal, self._portal.call(self._client.close))

    def __enter__(self) -> SessionClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The async rules: closed on success; on failure, tried within the
        # call timeout without hiding why the block ended.
        try:
            self._portal.call(partial(self._client.__aexit__, exc_type, exc, tb))
        except FlameError as error:
            if exc_type is None:
                raise
            # Not even tried: the connection itself is closed.
            log.warning("session %s was left open: %s", self.id, error)


class Session(SessionClient):
    """A session as the cluster reported it, and the client for its tasks: :class:`flame.Session`.

    The fields are a snapshot taken when the session was fetched;
    :meth:`close` refreshes them.
    """

    _client: aio.Session

    @property
    def application(self) -> str:
        """The application the session runs."""
        return self._client.application

    @property
    def slots(self) -> int:
        """Executor slots each of the session's executors takes."""
        return self._client.slots

    @property
    def state(self) -> SessionState:
        """OPEN or CLOSED."""
        return self._client.state

    @property
    def creation_time(self) -> datetime:
        """When the session was created (UTC)."""
        return self._client.creation_time

    @property
    def pending(self) -> int:
        """How many of its tasks were pending."""
        return self._client.pending

    @property
    def running(self) -> int:
        """How many of its tasks were running."""
        return self._client.running

    @property
    def succeed(self) -> int:
        """How many of its tasks had succeeded."""
        return self._client.succeed

    @property
    def failed(self) -> int:
        """How many of its tasks had failed."""
        return self._client.failed

    @property
    def completion_time(self) -> datetime | None:
        """When the session was closed (UTC), if it was."""
        return self._client.completion_time

    def close(self) -> Session:
        """Close the session, refresh these fields from the answer, and return it."""
        self._portal.call(self._client.close)
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Session):
            return NotImplemented
        return self._client == other._client

    __hash__ = None  # type: ignore[assignment]  # mutable, as flame.Session

    def __repr__(self) -> str:
        return "flame.sync." + repr(self._client)


@overload
def bind(connection: Connection, portal: Portal, client: aio.Session) -> Session: ...


@overload
def bind(connection: Connection, portal: Portal, client: aio.SessionClient) -> SessionClient: ...


def bind(connection: Connection, portal: Portal, client: aio.SessionClient) -> SessionClient:
    """The blocking counterpart of ``client``: a Session for a Session, else a SessionClient."""
    bound = (
        Session.__new__(Session)
        if isinstance(client, aio.Session)
        else SessionClient.__new__(SessionClient)
    )
    bound._client, bound._connection, bound._portal = client, connection, portal
    return bound
