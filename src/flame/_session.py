"""Sessions and their tasks: create, get, watch and run them.

:class:`SessionClient` runs and watches the tasks of one session;
:class:`Session` is one, with the fields the cluster reported.
:class:`TaskWatcher` follows one task. Every wait for a task's end, a
watcher's or ``run_task``'s, goes through one loop (:class:`_Watch`), and
every task run through one path (:meth:`SessionClient._run`); many tasks at
once are :mod:`flame._fanout`'s.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

import anyio
import attrs

from . import _connection
from ._calls import FrontendCalls
from ._errors import FlameError, FlameErrorCode
from ._fanout import (
    DEFAULT_CONCURRENCY,
    FanOut,
    FinishedTasks,
    TaskInputs,
    run_as_completed,
    run_in_order,
    task_failed,
)
from ._informer import INFORMER_BUFFER, Informing, TaskInformer
from ._progress import ProgressOption
from ._transport import Stream
from ._types import (
    _COMPLETED,
    Event,
    ResourceRequirement,
    SessionID,
    SessionState,
    Task,
    TaskID,
    TaskInput,
    TaskState,
    _check_bytes,
    _check_id,
    _invalid,
    _task_from_fields,
)
from ._wire import TaskFields
from ._wires import SessionFields

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["Session", "SessionClient", "TaskWatcher", "session_from_fields"]

log = logging.getLogger("flame.client")

_S = TypeVar("_S", bound="SessionClient")

#: Told each new state of a task, in order.
Note = Callable[[Task], Awaitable[None]]


_FAILED = int(TaskState.FAILED)


def _finished(message: TaskFields) -> bool:
    return message.has_status and message.state in _COMPLETED


class _Watch:
    """Follows one task to its final state: the one watch loop of the client.

    :meth:`next` gives each message of the task's WatchTask stream, the
    stream being opened at the first. It does not count on the cluster to
    send the task's current state first (a v0.4 cluster does not), and if
    the stream ends before the task has finished, it asks for the task
    (GetTask): its final state ends the watch, or FlameError
    ``UNAVAILABLE`` says the watch ended early. After the final state it
    gives None. :meth:`close` ends the stream at once, from plain code.
    """

    __slots__ = ("_calls", "_done", "_session_id", "_stream", "_task_id", "_thread")

    def __init__(self, calls: FrontendCalls, session_id: str, task_id: str) -> None:
        self._calls = calls
        self._session_id = session_id
        self._task_id = task_id
        self._stream: Stream[TaskFields] | None = None
        self._thread = 0
        self._done = False

    async def next(self) -> TaskFields | None:
        if self._done:
            return None
        stream = self._stream
        try:
            if stream is None:
                stream = self._stream = self._calls.watch_task(self._session_id, self._task_id)
                self._thread = threading.get_ident()
            try:
                message = await stream.__anext__()
            except StopAsyncIteration:
                # The stream ended before a final state: the task tells where it is.
                self.close()
                message = await self._calls.get_task(self._session_id, self._task_id)
                if not _finished(message):
                    raise self._ended_early(message) from None
        except BaseException:
            self.close()
            raise
        if _finished(message):
            self.close()
        return message

    def close(self) -> None:
        self._done = True
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def abandon(self) -> None:
        """Close the stream of a watch nobody holds any more, if this thread watched it."""
        if self._stream is not None and self._thread == threading.get_ident():
            self.close()

    def _ended_early(self, task: TaskFields) -> FlameError:
        state = TaskState(task.state).name if 0 <= task.state < len(TaskState) else task.state
        return FlameError(
            FlameErrorCode.UNAVAILABLE,
            f"the watch of task {self._task_id} of session {self._session_id} on "
            f"{self._calls.endpoint} ended while the task was still {state}; watch it again",
        )


class TaskWatcher:
    """An async iterator over the new states of one task.

    Returned by :meth:`SessionClient.watch_task`. The stream is opened at the
    first iteration and closed as soon as the final state has been read,
    when the loop is left by an exception or a cancellation, by
    :meth:`aclose`, or when leaving ``async with``. A watcher dropped in the
    middle (``break``) has its stream closed as it is collected.

    It does not count on the cluster to send the task's current state first
    (a v0.4 cluster does not), and if the stream ends before the task has
    finished, it asks for the task and yields its final state, or raises
    FlameError ``UNAVAILABLE``. A watcher is iterated once.
    """

    def __init__(self, client: SessionClient, task_id: TaskID) -> None:
        # The session client's calls: a sibling of this module.
        self._watch = _Watch(client._calls, client.id, task_id)
        self._scale = client._calls.scale
        self._session_id = client.id
        self._task_id = task_id

    def __repr__(self) -> str:
        return f"<TaskWatcher of task {self._task_id} of session {self._session_id}>"

    def __aiter__(self) -> TaskWatcher:
        return self

    async def __anext__(self) -> Task:
        message = await self._watch.next()
        if message is None:
            raise StopAsyncIteration
        return _task_from_fields(message, self._scale)

    async def aclose(self) -> None:
        """Stop watching and close the stream; harmless when already closed."""
        self._watch.close()

    async def __aenter__(self) -> TaskWatcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Left by `break` (or dropped) with the stream open. Closing a stream
        # awaits nothing: its reset is written now, and nothing is started.
        self._watch.abandon()


class SessionClient:
    """Runs and watches the tasks of one session.

    Get one from :meth:`Connection.session_client` (or
    ``SessionClient(conn, session_id)``) when only the id is known;
    :meth:`Connection.create_session` and :meth:`Connection.get_session`
    return a :class:`Session`, which is a ``SessionClient`` too.
    An async context manager: leaving the block closes the session.
    """

    id: SessionID
    _calls: FrontendCalls
    _closed: bool

    def __init__(self, connection: Connection, session_id: SessionID) -> None:
        if not isinstance(connection, _connection.Connection):
            raise _invalid(f"connection must be a Connection, not {type(connection).__name__}")
        self._calls = _connection.frontend_calls(connection)
        self.id = _check_id(session_id, "session_id")
        self._closed = False

    def __repr__(self) -> str:
        return f"<SessionClient of session {self.id} on {self._calls.endpoint}>"

    async def create_task(self, input_data: TaskInput) -> Task:
        """Add a task with ``input_data`` (bytes) to the session; it starts ``PENDING``.

        Raises FlameError ``INVALID_ARGUMENT`` (before any call) when the
        input is not bytes, and ``INVALID_STATE`` when the session is closed.
        """
        data = _check_bytes(input_data, "input_data")
        calls = self._calls
        return _task_from_fields(await calls.create_task(self.id, data), calls.scale)

    async def get_task(self, task_id: TaskID) -> Task:
        """The task ``task_id`` as it is now; FlameError ``NOT_FOUND`` if none."""
        task_id = _check_id(task_id, "task_id")
        calls = self._calls
        return _task_from_fields(await calls.get_task(self.id, task_id), calls.scale)

    def watch_task(self, task_id: TaskID) -> TaskWatcher:
        """Follow the task ``task_id``: an async iterator of its new states.

        No ``await`` is needed: the watch starts at the first iteration::

            async for update in session.watch_task(task.id):
                print(update.state)

        It ends after the task's final state (``SUCCEED``, ``FAILED`` or
        ``CANCELLED``). Use
        ``async with session.watch_task(task.id) as updates:`` to have the
        stream closed at a known point even when leaving the loop early.
        """
        return TaskWatcher(self, _check_id(task_id, "task_id"))

    async def run_task(
        self,
        input_data: TaskInput,
        informer: TaskInformer | None = None,
        *,
        check: bool = False,
    ) -> Task:
        """Create a task with ``input_data``, wait for it to finish, and return it.

        The returned :class:`Task` is in its final state, whatever that is:
        ``SUCCEED`` with its ``output``; ``FAILED`` with the output the
        application gave (usually its error's text; on v0.5 and v0.6 the
        reason is in its ``events``); or, on v0.6, ``CANCELLED`` (its session
        was closed before it ran). Look at ``task.state``; or, as with
        ``subprocess.run``, pass ``check=True`` to have a task that did not
        succeed raised instead, as FlameError ``INTERNAL`` whose ``task``
        attribute is the failed task::

            task = await session.run_task(b"exit 3")
            if task.state is TaskState.FAILED:
                print("failed:", task.output)

        Failures of the calls themselves (the cluster unreachable, the
        session closed, a bad input, a cancellation) always raise.

        With an ``informer``, its ``on_update`` sees each new state of the
        task, the created ``PENDING`` one first and the final one last, and
        its ``on_error`` sees the FlameError of a task that failed (the same
        one ``check=True`` raises, told before the task is returned or the
        error raised) or of a call that failed, before it is raised. The
        watch runs in a task of its own and hands updates over a small
        bounded buffer, so a slow informer holds it back only once that
        buffer is full. An exception raised by the informer itself stops the
        watch and propagates as it is.
        """
        data = _check_bytes(input_data, "input_data")
        if informer is None:
            task = await self._run(data)
            if check and task.state is not TaskState.SUCCEED:
                raise task_failed(task)
            return task
        raised: list[BaseException] = []
        outcome: list[Task | FlameError] = []
        async with anyio.create_task_group() as group:

            def stop(exc: BaseException) -> None:
                raised.append(exc)
                group.cancel_scope.cancel()

            notes = Informing(informer, INFORMER_BUFFER, stop)

            async def produce() -> None:
                try:
                    try:
                        task = await self._run(data, notes.update)
                    except FlameError as error:
                        outcome.append(error)
                        await notes.error(error)
                        return
                    if task.state is TaskState.SUCCEED:
                        outcome.append(task)
                        return
                    failure = task_failed(task)
                    outcome.append(failure if check else task)
                    # Told after every update, before the task is returned
                    # or the error raised.
                    await notes.error(failure)
                finally:
                    notes.finish()

            group.start_soon(produce)
            # The informer is told in the caller's own task.
            await notes.run()
        if raised:
            raise raised[0]
        if isinstance(outcome[0], FlameError):
            raise outcome[0]
        return outcome[0]

    async def _run(self, data: bytes, note: Note | None = None) -> Task:
        """Create a task and wait for its end: the one way a task is run.

        With ``note``, each new state of the task is told once, in order:
        the created one first, the final one last.
        """
        calls = self._calls
        scale = calls.scale
        created = await calls.create_task(self.id, data)
        if note is None:
            final = created if _finished(created) else await self._wait(created.id)
            if final.state == _FAILED:
                final = await self._with_events(final, created.id)
            return _task_from_fields(final, scale)
        task = _task_from_fields(created, scale)
        await note(task)
        if task.is_completed():
            return task
        last = [task]

        async def seen(message: TaskFields) -> None:
            # A cluster may send the current state first: each state is told once.
            if message.has_status and message.state != last[0].state:
                last[0] = _task_from_fields(message, scale)
                await note(last[0])

        final = await self._wait(created.id, seen)
        if final.state == _FAILED:
            final = await self._with_events(final, created.id)
        if last[0].state != final.state:
            last[0] = _task_from_fields(final, scale)
            await note(last[0])
        return last[0]

    async def _with_events(self, final: TaskFields, task_id: str) -> TaskFields:
        """``final``, fetched again if it failed without the events that say why.

        On v0.5 and v0.6 a failure's reason is in its events, which a watch's
        messages may lack (only GetTask always carries them).
        """
        if final.events or not self._calls.wire.has_events:
            return final
        return await self._calls.get_task(self.id, task_id)

    async def _wait(
        self,
        task_id: str,
        on_message: Callable[[TaskFields], Awaitable[None]] | None = None,
    ) -> TaskFields:
        """The final message of the task; ``on_message`` sees every message as it comes."""
        watch = _Watch(self._calls, self.id, task_id)
        last: TaskFields | None = None
        try:
            while (message := await watch.next()) is not None:
                last = message
                if on_message is not None:
                    await on_message(message)
        finally:
            watch.close()
        assert last is not None  # the watch ends with a final state or raises
        return last

    async def run_tasks(
        self,
        inputs: TaskInputs,
        *,
        informer: TaskInformer | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        fail_fast: bool = True,
        progress: ProgressOption = None,
    ) -> list[Task]:
        """Run a task for each of ``inputs`` and return them all, finished, in input order.

        ``inputs`` is a list of bytes, or any iterable or async iterable of
        bytes (a generator, say). It is read lazily: a new input is taken only
        when one of the ``concurrency`` tasks in flight has finished, so a
        generator of a million inputs is never held in memory at once (the
        returned list, of course, holds every task)::

            tasks = await session.run_tasks([b"1", b"2", b"3"], concurrency=2)
            print([task.output for task in tasks])

        Everything runs in one task group: when this call returns or raises,
        no watch, call or task of it is left, and cancelling the caller
        cancels every task in flight.

        With ``fail_fast`` (the default), the first failure (a task that
        ends ``FAILED``, an input that is not bytes, a refused or lost call)
        cancels the tasks still in flight, takes no more inputs, and is
        raised as the FlameError it is. Tasks already created on the cluster
        are not deleted: they run to their end there.

        With ``fail_fast=False`` every input is run whatever happens to the
        others; if any failed, :class:`TaskFailures` is raised at the end. It
        lists each failure with the index of its input, and its ``tasks``
        attribute is the list this call would have returned, with the
        ``FAILED`` tasks in their places and ``None`` where no task could be
        finished.

        With an ``informer``, its ``on_update`` sees every new state of every
        task (for each task in order: ``PENDING`` first, the final state
        last; tasks interleave), and its ``on_error`` each failure (with
        ``fail_fast``, the one raised, once every update before it has been
        told). All of them pass through one bounded buffer read by one task:
        informer methods (plain or ``async``) run one at a time, and a slow
        informer holds the tasks back only once that buffer is full. An
        exception raised by the informer, or by iterating ``inputs``, cancels
        everything and propagates as it is.

        With ``progress=True``, a display on stderr shows the inputs done
        and of how many, those failed, the rate and the time left, while
        the call runs, when stderr is a terminal (nothing is drawn
        otherwise); ``progress="pricing"`` labels it. A :class:`Progress`
        says more: the total of a generator, a rich ``Console`` or
        ``rich.progress.Progress`` of your own, or a callback given the
        counts. The display is redrawn from the event loop, with no thread,
        and closed when the call returns, raises or is cancelled. Off (the
        default), it costs nothing.

        Raises FlameError ``INVALID_ARGUMENT`` before any call when
        ``concurrency`` is below 1, ``inputs`` is not an iterable, (for a
        list or tuple) an input is not bytes, or ``progress`` is not a
        progress option.
        """
        fan_out = FanOut(self._run, inputs, informer, concurrency, fail_fast, progress)
        self._calls.check_open()
        return await run_in_order(fan_out)

    def as_completed(
        self,
        inputs: TaskInputs,
        *,
        informer: TaskInformer | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        fail_fast: bool = True,
        progress: ProgressOption = None,
    ) -> contextlib.AbstractAsyncContextManager[FinishedTasks]:
        """Run a task for each of ``inputs``; iterate the tasks as they finish.

        The same as :meth:`run_tasks`, but each task is handed over as soon as
        it has finished, and none is kept afterwards: memory stays bounded by
        ``concurrency`` however many inputs there are. The tasks run inside
        the ``async with``, which owns their task group; leaving it (after
        the loop, or early by ``break``, an exception or a cancellation)
        cancels whatever is still in flight::

            async with session.as_completed(inputs, concurrency=64) as finished:
                async for task in finished:
                    print(task.id, task.output)

        A task that has not been taken from the iterator holds its place: no
        new input is taken until the body has taken it (so a slow body slows
        the run rather than filling memory).

        With ``fail_fast`` (the default), the first failure cancels the rest
        and is raised by the ``async for``. With ``fail_fast=False``,
        ``FAILED`` tasks are handed over like the others, and once every
        input has been run the ``async for`` raises :class:`TaskFailures`
        listing what failed (only failures are kept for that). ``informer``,
        ``concurrency``, ``progress`` and the checks made before any call are
        those of :meth:`run_tasks`; the checks happen here, when
        ``as_completed`` is called. The progress display lasts as long as
        the ``async with``; it counts a task done when it has finished, not
        when the body takes it.
        """
        fan_out = FanOut(self._run, inputs, informer, concurrency, fail_fast, progress)
        self._calls.check_open()
        return run_as_completed(fan_out)

    async def close(self) -> Session:
        """Close the session (see :meth:`Connection.close_session`) and return it."""
        calls = self._calls
        closed = session_from_fields(await calls.call(calls.wire.close_session(self.id)), calls)
        self._closed = True
        return closed

    async def __aenter__(self: _S) -> _S:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:
            return
        if exc_type is None:
            await self.close()
            return
        # The block failed or was cancelled: still try to close, within the
        # call timeout, but never hide why the block ended.
        bound = self._calls.timeout or _connection.DEFAULT_CALL_TIMEOUT
        with anyio.move_on_after(bound, shield=True):
            try:
                await self.close()
            except FlameError as error:
                log.warning("session %s was left open: %s", self.id, error)


@attrs.define(eq=True, repr=True)
class Session(SessionClient):
    """A session, as the cluster reported it, and the client for its tasks.

    The fields are a snapshot taken when the session was fetched
    (:meth:`close` refreshes them). ``pending``, ``running``, ``succeed``,
    ``failed`` and ``cancelled`` (v0.6) count the session's tasks by state.
    ``slots`` is 1 on v0.6, which has none; ``min_instances``,
    ``max_instances``, ``priority``, ``resreq`` and ``events`` are v0.6's
    (``events`` v0.5's too: GetSession and ListSession carry them), and
    keep their defaults on the wires without them.
    """

    id: SessionID
    application: str
    slots: int
    state: SessionState
    creation_time: datetime
    pending: int = 0
    running: int = 0
    succeed: int = 0
    failed: int = 0
    completion_time: datetime | None = None
    cancelled: int = 0
    min_instances: int = 0
    max_instances: int | None = None
    priority: int = 0
    resreq: ResourceRequirement | None = None
    events: tuple[Event, ...] = ()
    _calls: FrontendCalls = attrs.field(kw_only=True, eq=False, repr=False)
    _closed: bool = attrs.field(init=False, default=False, eq=False, repr=False)

    async def close(self) -> Session:
        """Close the session, refresh these fields from the answer, and return it."""
        closed = await super().close()
        self.state = closed.state
        self.completion_time = closed.completion_time
        self.pending, self.running = closed.pending, closed.running
        self.succeed, self.failed = closed.succeed, closed.failed
        self.cancelled = closed.cancelled
        return self


_SESSION_FIELDS = tuple(field.name for field in attrs.fields(SessionFields))


def session_from_fields(fields: SessionFields, calls: FrontendCalls) -> Session:
    """The Session a wire's codec read, its tasks called through ``calls``."""
    values = {name: getattr(fields, name) for name in _SESSION_FIELDS}
    return Session(**values, calls=calls)
