"""The client: a connection to a Flame cluster, its sessions and their tasks.

Everything here is written with anyio and works the same under asyncio and
trio. The network is reached only through :mod:`flame._transport`, whose
failures already arrive as :class:`FlameError`; this module adds the checks
that can be made before a call, and the meaning of the cluster's answers.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import anyio
import attrs

from ._config import default_endpoint
from ._errors import FlameError, FlameErrorCode
from ._proto.v04 import flame as pb
from ._transport import Channel, RetryPolicy, Stream
from ._types import (
    _SESSION_STATES,
    Application,
    ApplicationAttributes,
    SessionAttributes,
    SessionID,
    SessionState,
    Task,
    TaskID,
    TaskInput,
    TaskState,
    _application_from_pb,
    _application_spec_to_pb,
    _check_bytes,
    _check_id,
    _check_name,
    _enum,
    _invalid,
    _optional_time,
    _session_spec_to_pb,
    _task_from_fields,
    _time,
)
from ._wire import TaskFields, decode_task, encode_create_task, encode_task_request

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_CONNECT_TIMEOUT",
    "Connection",
    "FinishedTasks",
    "Session",
    "SessionClient",
    "TaskFailure",
    "TaskFailures",
    "TaskInformer",
    "TaskWatcher",
    "connect",
]

log = logging.getLogger("flame.client")

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds :meth:`Connection.connect` waits for the cluster to accept the connection."""
DEFAULT_CALL_TIMEOUT = 60.0
"""Seconds a single request may take (watches are not bounded: tasks may run long)."""

DEFAULT_CONCURRENCY = 64
"""How many tasks :meth:`SessionClient.run_tasks` and :meth:`SessionClient.as_completed`
keep in flight unless told otherwise."""

# How many updates run_task lets the watch get ahead of a slow informer.
_INFORMER_BUFFER = 16

TaskInputs = Iterable[TaskInput] | AsyncIterable[TaskInput]
"""What :meth:`SessionClient.run_tasks` takes: a list, or any (async) iterable, of inputs."""

# The task states after which nothing changes, as raw wire values.
_FINAL_STATES = frozenset((int(TaskState.SUCCEED), int(TaskState.FAILED)))

_C = TypeVar("_C", bound="Connection")
_S = TypeVar("_S", bound="SessionClient")


# The calls made once or more per task go through the lean path of the
# transport, with the hand-written codec of flame._wire.
_CREATE_TASK = "/flame.Frontend/CreateTask"
_GET_TASK = "/flame.Frontend/GetTask"
_WATCH_TASK = "/flame.Frontend/WatchTask"


def _finished(message: TaskFields) -> bool:
    return message.has_status and message.state in _FINAL_STATES


def _task_failed(task: Task) -> FlameError:
    text = (task.output or b"").decode("utf-8", "replace").strip()
    if len(text) > 2000:
        text = text[:2000] + " [...]"
    return FlameError(
        FlameErrorCode.INTERNAL,
        f"task {task.id} of session {task.session_id} failed: {text or '(no output)'}",
    )


# --------------------------------------------------------------------------
# Connection


class Connection:
    """A connection to a Flame cluster: applications and sessions.

    Open one with :meth:`Connection.connect` (or :func:`flame.connect`) and
    close it with :meth:`close`, or use it as an async context manager::

        async with await Connection.connect("http://127.0.0.1:8080") as conn:
            print(await conn.list_sessions())

    One connection carries any number of concurrent calls, from any number
    of tasks of the event loop that opened it.
    """

    def __init__(
        self, channel: Channel, *, request_timeout: float | None = DEFAULT_CALL_TIMEOUT
    ) -> None:
        # Use Connection.connect(); this is called with an open channel.
        self._channel = channel
        self._stub = pb.FrontendStub(channel)
        self._timeout = request_timeout
        self._closed = False

    @classmethod
    async def connect(
        cls: type[_C],
        addr: str | None = None,
        *,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        request_timeout: float | None = DEFAULT_CALL_TIMEOUT,
        ca_file: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> _C:
        """Connect to the cluster at ``addr``, such as ``"http://localhost:8080"``.

        With no ``addr``, the endpoint comes from ``FLAME_ENDPOINT``, else from
        ``~/.flame/flame-conf.yaml``, else :data:`DEFAULT_FLAME_ENDPOINT`.
        ``https://`` endpoints use TLS (``ca_file`` names extra trusted
        certificates). ``connect_timeout`` bounds the wait for the cluster to
        accept the connection; ``request_timeout`` bounds each later request
        (``None``: no bound), and is sent to the cluster as the request's
        deadline. ``retry`` (a :class:`RetryPolicy`; by default 3 attempts,
        pausing 10 ms then 40 ms) says how a request the cluster refused
        without processing it is made again.

        Raises FlameError: ``INVALID_CONFIG`` for an address that is not an
        ``http(s)://host:port`` URL, ``UNAVAILABLE`` when nothing answers there.
        """
        channel = await Channel.connect(
            default_endpoint() if addr is None else addr,
            ca_file=ca_file,
            connect_timeout=connect_timeout,
            retry=retry,
        )
        return cls(channel, request_timeout=request_timeout)

    @property
    def endpoint(self) -> str:
        """The URL this connection talks to."""
        return self._channel.endpoint.url

    async def close(self) -> None:
        """Close the connection; calls still in flight fail. Closing twice is harmless."""
        self._closed = True
        await self._channel.aclose()

    async def __aenter__(self: _C) -> _C:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Connection to {self.endpoint} ({state})>"

    def _check_open(self) -> None:
        if self._closed:
            raise FlameError(
                FlameErrorCode.INVALID_STATE,
                f"the connection to {self.endpoint} is closed; connect again",
            )

    async def _call(self, method: Any, request: Any) -> Any:
        if self._closed:
            self._check_open()
        return await self._channel.unary(method, request, timeout=self._timeout)

    def _check_result(self, result: pb.Result, call: str, name: str) -> None:
        if result.return_code == 0:
            return
        said = (result.message or "").strip()
        # A v0.4 cluster answers these calls with a Result, not a gRPC status;
        # its text is all there is to tell a bad argument from a name in use.
        lowered = said.lower()
        argument_words = ("invalid", "missing", "required", "empty", "bad ", "must")
        code = (
            FlameErrorCode.INVALID_ARGUMENT
            if any(word in lowered for word in argument_words)
            else FlameErrorCode.INVALID_STATE
        )
        raise FlameError(
            code,
            f"{call} of application {name!r} on {self.endpoint} was refused "
            f"(code {result.return_code}): {said or 'no reason given'}",
        )

    # -- applications ------------------------------------------------------

    async def register_application(
        self, name: str, app_attrs: ApplicationAttributes | Mapping[str, Any]
    ) -> None:
        """Register the application ``name``, run as ``app_attrs`` say.

        ``app_attrs`` is an :class:`ApplicationAttributes` or a dict with the
        same keys::

            await conn.register_application("my-app", {
                "shim": Shim.SHELL,
                "command": "python",
                "arguments": ["script.py"],
            })

        Raises FlameError ``INVALID_ARGUMENT`` (checked before any call) for
        an empty name or a bad attribute, and ``INVALID_STATE`` when the
        cluster refuses, e.g. because the name is taken.
        """
        name = _check_name(name, "the application name")
        attributes = ApplicationAttributes._coerce(app_attrs)
        if attributes.name and attributes.name != name:
            raise _invalid(
                f"the application is registered as {name!r} but its attributes name it "
                f"{attributes.name!r}; leave the attributes' name empty or make them agree"
            )
        request = pb.RegisterApplicationRequest(
            name=name, application=_application_spec_to_pb(attributes)
        )
        result = await self._call(self._stub.register_application, request)
        self._check_result(result, "RegisterApplication", name)

    async def unregister_application(self, name: str) -> None:
        """Unregister the application ``name``.

        A v0.4 cluster does not implement this call: it raises FlameError
        ``UNIMPLEMENTED`` there.
        """
        name = _check_name(name, "the application name")
        request = pb.UnregisterApplicationRequest(name=name)
        result = await self._call(self._stub.unregister_application, request)
        self._check_result(result, "UnregisterApplication", name)

    async def list_applications(self) -> list[Application]:
        """Every registered application."""
        answer = await self._call(self._stub.list_application, pb.ListApplicationRequest())
        return [_application_from_pb(message) for message in answer.applications]

    # -- sessions ------------------------------------------------------------

    async def create_session(self, attrs: SessionAttributes | Mapping[str, Any]) -> Session:
        """Open a session of an application; it accepts tasks until closed.

        ``attrs`` is a :class:`SessionAttributes` (or a dict of its fields).
        The returned :class:`Session` is also the client for its tasks, and an
        async context manager that closes the session on exit::

            async with await conn.create_session(SessionAttributes("my-app")) as session:
                task = await session.run_task(b"echo hello")
        """
        attributes = SessionAttributes._coerce(attrs)
        request = pb.CreateSessionRequest(session=_session_spec_to_pb(attributes))
        return _session_from_pb(await self._call(self._stub.create_session, request), self)

    async def list_sessions(self) -> list[Session]:
        """Every session the cluster knows, open or closed."""
        answer = await self._call(self._stub.list_session, pb.ListSessionRequest())
        return [_session_from_pb(message, self) for message in answer.sessions]

    async def get_session(self, session_id: SessionID) -> Session:
        """The session ``session_id`` as it is now; FlameError ``NOT_FOUND`` if none."""
        request = pb.GetSessionRequest(session_id=_check_id(session_id, "session_id"))
        return _session_from_pb(await self._call(self._stub.get_session, request), self)

    async def close_session(self, session_id: SessionID) -> Session:
        """Close the session ``session_id`` and return it, now ``CLOSED``.

        The cluster closes only a session none of whose tasks is pending or
        running; otherwise it raises FlameError ``INVALID_STATE``.
        """
        request = pb.CloseSessionRequest(session_id=_check_id(session_id, "session_id"))
        return _session_from_pb(await self._call(self._stub.close_session, request), self)

    def session_client(self, session_id: SessionID) -> SessionClient:
        """A client for the tasks of the session ``session_id``, without asking the cluster.

        Use it when the id is known already (from another process, say) and
        the session's fields are not needed. Same as ``SessionClient(conn, id)``.
        """
        return SessionClient(self, session_id)


async def connect(
    addr: str | None = None,
    *,
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    request_timeout: float | None = DEFAULT_CALL_TIMEOUT,
    ca_file: str | None = None,
    retry: RetryPolicy | None = None,
) -> Connection:
    """Connect to a Flame cluster; the same as :meth:`Connection.connect`.

    With no ``addr``, the endpoint is ``FLAME_ENDPOINT`` if set, else the
    ``endpoint`` of the ``flame`` context in ``~/.flame/flame-conf.yaml``,
    else :data:`DEFAULT_FLAME_ENDPOINT`.
    """
    return await Connection.connect(
        addr,
        connect_timeout=connect_timeout,
        request_timeout=request_timeout,
        ca_file=ca_file,
        retry=retry,
    )


# --------------------------------------------------------------------------
# Sessions and their tasks


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


async def _inform(method: Any, argument: Any) -> None:
    result = method(argument)
    if inspect.isawaitable(result):
        await result


class SessionClient:
    """Runs and watches the tasks of one session.

    Get one from :meth:`Connection.session_client` (or
    ``SessionClient(conn, session_id)``) when only the id is known;
    :meth:`Connection.create_session` and :meth:`Connection.get_session`
    return a :class:`Session`, which is a ``SessionClient`` too.
    An async context manager: leaving the block closes the session.
    """

    id: SessionID
    _connection: Connection
    _closed: bool

    def __init__(self, connection: Connection, session_id: SessionID) -> None:
        if not isinstance(connection, Connection):
            raise _invalid(f"connection must be a Connection, not {type(connection).__name__}")
        self._connection = connection
        self.id = _check_id(session_id, "session_id")
        self._closed = False

    def __repr__(self) -> str:
        return f"<SessionClient of session {self.id} on {self._connection.endpoint}>"

    async def _create(self, data: bytes) -> TaskFields:
        connection = self._connection
        if connection._closed:
            connection._check_open()
        return await connection._channel.call(
            _CREATE_TASK,
            encode_create_task(self.id, data),
            decode_task,
            timeout=connection._timeout,
        )

    async def _get(self, task_id: str) -> TaskFields:
        connection = self._connection
        if connection._closed:
            connection._check_open()
        return await connection._channel.call(
            _GET_TASK,
            encode_task_request(task_id, self.id),
            decode_task,
            timeout=connection._timeout,
        )

    async def create_task(self, input_data: TaskInput) -> Task:
        """Add a task with ``input_data`` (bytes) to the session; it starts ``PENDING``.

        Raises FlameError ``INVALID_ARGUMENT`` (before any call) when the
        input is not bytes, and ``INVALID_STATE`` when the session is closed.
        """
        return _task_from_fields(await self._create(_check_bytes(input_data, "input_data")))

    async def get_task(self, task_id: TaskID) -> Task:
        """The task ``task_id`` as it is now; FlameError ``NOT_FOUND`` if none."""
        return _task_from_fields(await self._get(_check_id(task_id, "task_id")))

    def watch_task(self, task_id: TaskID) -> TaskWatcher:
        """Follow the task ``task_id``: an async iterator of its new states.

        No ``await`` is needed: the watch starts at the first iteration::

            async for update in session.watch_task(task.id):
                print(update.state)

        It ends after the task's final state (``SUCCEED`` or ``FAILED``). Use
        ``async with session.watch_task(task.id) as updates:`` to have the
        stream closed at a known point even when leaving the loop early.
        """
        return TaskWatcher(self, _check_id(task_id, "task_id"))

    async def run_task(self, input_data: TaskInput, informer: TaskInformer | None = None) -> Task:
        """Create a task with ``input_data``, wait for it to finish, and return it.

        The returned :class:`Task` is ``SUCCEED`` and carries its ``output``.
        If the task fails, FlameError ``INTERNAL`` is raised with the task's
        id and its output's text (the error the application reported).

        With an ``informer``, its ``on_update`` sees each new state of the
        task, the created ``PENDING`` one first and the final one last, and
        its ``on_error`` sees any FlameError just before it is raised. The
        watch runs in a task of its own and hands updates over a small bounded
        buffer, so a slow informer holds it back only once that buffer is
        full. An exception raised by the informer itself stops the watch and
        propagates as it is.
        """
        data = _check_bytes(input_data, "input_data")
        if informer is None:
            task = await self._run_lean(data)
            if task.state is TaskState.FAILED:
                raise _task_failed(task)
            return task
        return await self._run_informed(data, informer)

    async def _run_lean(self, data: bytes) -> Task:
        """Create a task and wait for its end: two calls, one conversion, nothing else."""
        created = await self._create(data)
        final = created if _finished(created) else await self._wait(created.id)
        return _task_from_fields(final)

    async def _run_noted(self, data: bytes, note: Callable[[Task], Awaitable[None]]) -> Task:
        """Like :meth:`_run_lean`, handing each new state of the task to ``note``."""
        created = await self._create(data)
        task = _task_from_fields(created)
        await note(task)
        if task.is_completed():
            return task
        last = [task]

        async def seen(message: TaskFields) -> None:
            # A cluster may send the current state first: each state is told once.
            if message.has_status and message.state != last[0].state:
                last[0] = _task_from_fields(message)
                await note(last[0])

        final = await self._wait(created.id, seen)
        if last[0].state != final.state:
            last[0] = _task_from_fields(final)
            await note(last[0])
        return last[0]

    async def _wait(
        self,
        task_id: str,
        on_message: Callable[[TaskFields], Awaitable[None]] | None = None,
    ) -> TaskFields:
        """Watch a task to its end and return its final message (the lean path).

        ``on_message`` (if any) sees every message of the watch as it comes.
        """
        connection = self._connection
        if connection._closed:
            connection._check_open()
        request = encode_task_request(task_id, self.id)
        last: TaskFields | None = None
        async with connection._channel.open_stream(_WATCH_TASK, request, decode_task) as updates:
            async for message in updates:
                last = message
                if on_message is not None:
                    await on_message(message)
                if _finished(message):
                    break
        if last is None or not _finished(last):
            # The stream ended before the task did: ask for it directly.
            last = await self._get(task_id)
            if not _finished(last):
                raise _watch_ended(connection, self.id, task_id, last)
        return last

    async def run_tasks(
        self,
        inputs: TaskInputs,
        *,
        informer: TaskInformer | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        fail_fast: bool = True,
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

        Raises FlameError ``INVALID_ARGUMENT`` before any call when
        ``concurrency`` is below 1, ``inputs`` is not an iterable, or (for a
        list or tuple) an input is not bytes.
        """
        fan_out = _FanOut(self, inputs, informer, concurrency, fail_fast)
        results: list[Task | None] = []

        async def keep(index: int, task: Task) -> None:
            while len(results) <= index:
                results.append(None)
            results[index] = task

        await fan_out.run(keep)
        results.extend([None] * (fan_out.taken - len(results)))
        outcome = fan_out.outcome(results)
        if outcome is not None:
            raise outcome
        return results  # type: ignore[return-value]  # every place holds a Task

    def as_completed(
        self,
        inputs: TaskInputs,
        *,
        informer: TaskInformer | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        fail_fast: bool = True,
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
        ``concurrency`` and the checks made before any call are those of
        :meth:`run_tasks`; the checks happen here, when ``as_completed`` is
        called.
        """
        return _run_as_completed(_FanOut(self, inputs, informer, concurrency, fail_fast))

    async def _run_informed(self, data: bytes, informer: TaskInformer) -> Task:
        send, receive = anyio.create_memory_object_stream[Task](_INFORMER_BUFFER)
        failure: list[FlameError] = []
        informer_error: list[BaseException] = []

        async def produce() -> None:
            with send:
                try:
                    created = _task_from_fields(await self._create(data))
                    await send.send(created)
                    if not created.is_completed():
                        async with TaskWatcher(self, created.id) as updates:
                            async for update in updates:
                                await send.send(update)
                except FlameError as exc:
                    failure.append(exc)

        last: Task | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(produce)
            with receive:
                async for update in receive:
                    # A cluster may send the current state first: the informer
                    # hears of each state once.
                    if last is not None and update.state is last.state:
                        last = update
                        continue
                    last = update
                    try:
                        await _inform(informer.on_update, update)
                    except Exception as exc:
                        # Raised after the group, so that it is not wrapped
                        # in an exception group.
                        informer_error.append(exc)
                        group.cancel_scope.cancel()
                        break
        if informer_error:
            raise informer_error[0]
        if failure:
            error = failure[0]
        elif last is None or not last.is_completed():
            error = FlameError(FlameErrorCode.INTERNAL, "the task's watch ended without its state")
        elif last.state is TaskState.FAILED:
            error = _task_failed(last)
        else:
            return last
        await _inform(informer.on_error, error)
        raise error

    async def close(self) -> Session:
        """Close the session (see :meth:`Connection.close_session`) and return it."""
        closed = await self._connection.close_session(self.id)
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
        with anyio.move_on_after(self._connection._timeout or DEFAULT_CALL_TIMEOUT, shield=True):
            try:
                await self.close()
            except FlameError as error:
                log.warning("session %s was left open: %s", self.id, error)


# --------------------------------------------------------------------------
# Many tasks at once


@attrs.frozen
class TaskFailure:
    """One input of :meth:`SessionClient.run_tasks` (or ``as_completed``) that failed."""

    index: int
    """Where the input was among the inputs, counted from 0."""
    error: FlameError
    """Why: the task failed (its output is in the message), or a call was refused or lost."""
    task: Task | None = None
    """The ``FAILED`` task, or None when no task was created or seen to finish."""


class TaskFailures(FlameError):
    """Some inputs of a ``fail_fast=False`` run failed; the others ran to their end.

    ``failures`` lists each failed input, in the order they failed.
    ``tasks`` (from :meth:`SessionClient.run_tasks` only; None from
    ``as_completed``, which keeps no task) holds one place per input: the
    finished task, ``FAILED`` ones included, or None where no task finished.
    The ``code`` is the failures' code when they all share one, else
    ``INTERNAL``.
    """

    failures: tuple[TaskFailure, ...]
    tasks: list[Task | None] | None
    total: int

    def __init__(
        self,
        failures: Sequence[TaskFailure],
        total: int,
        tasks: list[Task | None] | None = None,
    ) -> None:
        codes = {failure.error.code for failure in failures}
        code = codes.pop() if len(codes) == 1 else FlameErrorCode.INTERNAL
        first = failures[0] if failures else None
        said = f"; the first, input {first.index}: {first.error.message}" if first else ""
        super().__init__(code, f"{len(failures)} of {total} task(s) failed{said}")
        self.failures = tuple(failures)
        self.total = total
        self.tasks = tasks

    def __repr__(self) -> str:
        return f"TaskFailures({self.code.name}, {self.message!r})"

    def __reduce__(self) -> Any:
        return (type(self), (self.failures, self.total, self.tasks))


def _check_inputs(inputs: object) -> Iterator[Any] | AsyncIterator[Any]:
    if isinstance(inputs, (bytes, bytearray, memoryview, str)):
        raise _invalid(
            f"inputs is one {type(inputs).__name__} object; pass a list (or iterable) "
            "of inputs, such as [data]"
        )
    if isinstance(inputs, (list, tuple)):
        for index, data in enumerate(inputs):
            _check_bytes(data, f"input {index} of inputs")
    if isinstance(inputs, AsyncIterable):
        return inputs.__aiter__()
    if isinstance(inputs, Iterable):
        return iter(inputs)
    raise _invalid(
        f"inputs must be a list or an (async) iterable of bytes, not {type(inputs).__name__}"
    )


def _check_concurrency(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"concurrency must be an int, not {type(value).__name__}")
    if value < 1:
        raise _invalid(f"concurrency is {value}; let at least 1 task run at a time")
    return value


def _check_informer(informer: object) -> TaskInformer | None:
    if informer is None:
        return None
    for method in ("on_update", "on_error"):
        if not callable(getattr(informer, method, None)):
            raise _invalid(
                f"informer {type(informer).__name__} has no {method}(); "
                "give a TaskInformer (or an object with on_update and on_error)"
            )
    return informer  # type: ignore[return-value]


class _FanOut:
    """The engine of run_tasks and as_completed: workers pulling inputs, one informer.

    Up to ``concurrency`` workers each take the next input, run its task, and
    hand the finished task to ``deliver``; a worker is started only when all
    the others are busy, so a short input list starts few. Nothing here
    raises but a cancellation from outside: failures are recorded and
    :meth:`outcome` says what to raise, so the caller never sees an
    exception group.
    """

    def __init__(
        self,
        client: SessionClient,
        inputs: TaskInputs,
        informer: TaskInformer | None,
        concurrency: int,
        fail_fast: bool,
    ) -> None:
        self._concurrency = _check_concurrency(concurrency)
        self._informer = _check_informer(informer)
        iterator = _check_inputs(inputs)
        client._connection._check_open()
        self._client = client
        self._fail_fast = bool(fail_fast)
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterator[Any] | None = None
        if isinstance(iterator, AsyncIterator):
            self._async = iterator
        else:
            self._sync = iterator
        self._lock = anyio.Lock()
        self._exhausted = False
        #: How many inputs were taken; the next one's index.
        self.taken = 0
        self._workers = 0
        self._failures: list[TaskFailure] = []
        #: The first failure with fail_fast, raised after on_error has seen it.
        self._failure: FlameError | None = None
        #: An exception of the caller's own code (informer, inputs): raised as it is.
        self._raised: BaseException | None = None
        self._notes: Any = None
        self._scope: anyio.CancelScope | None = None
        self._group: Any = None
        self._deliver: Callable[[int, Task], Awaitable[None]] | None = None
        self._ran = False

    async def run(self, deliver: Callable[[int, Task], Awaitable[None]]) -> None:
        """Run every input (or up to the first failure with fail_fast). Runs once."""
        if self._ran:
            raise FlameError(FlameErrorCode.INVALID_STATE, "these tasks have been run already")
        self._ran = True
        self._deliver = deliver
        informer = self._informer
        async with anyio.create_task_group() as outer:
            if informer is not None:
                send, receive = anyio.create_memory_object_stream[tuple[bool, Any]](
                    max(_INFORMER_BUFFER, self._concurrency)
                )
                self._notes = send
                outer.start_soon(self._inform, informer, receive)
            try:
                async with anyio.create_task_group() as workers:
                    self._scope, self._group = workers.cancel_scope, workers
                    self._workers = 1
                    workers.start_soon(self._work)
            finally:
                # The informer drains what is buffered, then ends.
                if self._notes is not None:
                    self._notes.close()
        failure = self._failure
        if informer is not None and failure is not None and self._raised is None:
            try:
                await _inform(informer.on_error, failure)
            except Exception as exc:
                self._raised = exc

    def outcome(self, tasks: list[Task | None] | None = None) -> BaseException | None:
        """What the run ends with: the exception to raise, or None if all went well."""
        if self._raised is not None:
            return self._raised
        if self._failure is not None:
            return self._failure
        if self._failures:
            return TaskFailures(self._failures, self.taken, tasks)
        return None

    def _stop(self, error: BaseException, *, raised: bool = False) -> None:
        if self._raised is None and self._failure is None:
            if raised or not isinstance(error, FlameError):
                self._raised = error
            else:
                self._failure = error
        if self._scope is not None:
            self._scope.cancel()

    async def _take(self) -> tuple[int, Any] | None:
        if self._exhausted or self._failure is not None or self._raised is not None:
            # Nothing more is read once the run is over.
            return None
        try:
            if self._sync is not None:
                data = next(self._sync)
            else:
                assert self._async is not None
                # Two workers must not advance one async generator at once.
                async with self._lock:
                    if self._exhausted:
                        return None
                    data = await self._async.__anext__()
        except (StopIteration, StopAsyncIteration):
            self._exhausted = True
            return None
        except Exception as exc:
            # The caller's iterable failed: its own error, as it is.
            self._exhausted = True
            self._stop(exc, raised=True)
            return None
        index = self.taken
        self.taken += 1
        return index, data

    async def _work(self) -> None:
        client = self._client
        notes = self._notes
        deliver = self._deliver
        assert deliver is not None
        while True:
            taken = await self._take()
            if taken is None:
                return
            if self._workers < self._concurrency:
                # Every worker is busy: one more may take the next input.
                self._workers += 1
                self._group.start_soon(self._work)
            index, data = taken
            try:
                data = _check_bytes(data, f"input {index} of inputs")
                if notes is None:
                    task = await client._run_lean(data)
                else:
                    task = await client._run_noted(data, self._note)
            except FlameError as error:
                await self._failed(index, error, None)
                continue
            if task.state is TaskState.FAILED:
                await self._failed(index, _task_failed(task), task)
            else:
                await deliver(index, task)

    async def _failed(self, index: int, error: FlameError, task: Task | None) -> None:
        if self._fail_fast:
            self._stop(error)
            return
        self._failures.append(TaskFailure(index, error, task))
        if self._notes is not None:
            await self._send_note((True, error))
        if task is not None:
            assert self._deliver is not None
            await self._deliver(index, task)

    async def _note(self, task: Task) -> None:
        await self._send_note((False, task))

    async def _send_note(self, note: tuple[bool, Any]) -> None:
        try:
            await self._notes.send(note)
        except anyio.BrokenResourceError:
            # The informer failed and stopped reading: the run is being cancelled.
            await anyio.lowlevel.checkpoint()

    async def _inform(self, informer: TaskInformer, receive: Any) -> None:
        with receive:
            async for is_error, value in receive:
                try:
                    await _inform(informer.on_error if is_error else informer.on_update, value)
                except Exception as exc:
                    self._stop(exc, raised=True)
                    return


class FinishedTasks:
    """The tasks of :meth:`SessionClient.as_completed`, in the order they finish.

    An async iterator, used once, inside the ``async with`` that gave it.
    When every input has been run it ends, or raises the run's failure (see
    :meth:`SessionClient.as_completed`).
    """

    def __init__(self, receive: Any, fan_out: _FanOut) -> None:
        self._receive = receive
        self._fan_out = fan_out
        self._ended = False

    @property
    def taken(self) -> int:
        """How many inputs have been taken so far (each one is, or was, a task)."""
        return self._fan_out.taken

    def __aiter__(self) -> FinishedTasks:
        return self

    async def __anext__(self) -> Task:
        if self._ended:
            raise StopAsyncIteration
        try:
            task: Task = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._ended = True
            outcome = self._fan_out.outcome()
            if outcome is not None:
                raise outcome from None
            raise StopAsyncIteration from None
        return task


@contextlib.asynccontextmanager
async def _run_as_completed(fan_out: _FanOut) -> AsyncIterator[FinishedTasks]:
    # Unbuffered: a finished task waits in its worker until it is taken, so
    # no new input is taken while the body is busy.
    send, receive = anyio.create_memory_object_stream[Task](0)

    async def hand_over(index: int, task: Task) -> None:
        try:
            await send.send(task)
        except anyio.BrokenResourceError:
            # The body has left: the run is being cancelled.
            await anyio.lowlevel.checkpoint()

    async def run() -> None:
        with send:
            await fan_out.run(hand_over)

    body_error: Exception | None = None
    async with anyio.create_task_group() as group:
        group.start_soon(run)
        try:
            yield FinishedTasks(receive, fan_out)
        except Exception as exc:
            # Raised after the group, so that it is not wrapped in a group.
            body_error = exc
        finally:
            group.cancel_scope.cancel()
            receive.close()
    if body_error is not None:
        raise body_error


def _watch_ended(
    connection: Connection, session_id: str, task_id: str, task: TaskFields
) -> FlameError:
    state = TaskState(task.state).name if 0 <= task.state < len(TaskState) else task.state
    return FlameError(
        FlameErrorCode.UNAVAILABLE,
        f"the watch of task {task_id} of session {session_id} on {connection.endpoint} "
        f"ended while the task was still {state}; watch it again",
    )


@attrs.define(eq=True, repr=True)
class Session(SessionClient):
    """A session, as the cluster reported it, and the client for its tasks.

    The fields are a snapshot taken when the session was fetched
    (:meth:`close` refreshes them). ``pending``, ``running``, ``succeed`` and
    ``failed`` count the session's tasks by state.
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
    _connection: Connection = attrs.field(kw_only=True, eq=False, repr=False)
    _closed: bool = attrs.field(init=False, default=False, eq=False, repr=False)

    async def close(self) -> Session:
        """Close the session, refresh these fields from the answer, and return it."""
        closed = await super().close()
        self.state = closed.state
        self.completion_time = closed.completion_time
        self.pending, self.running = closed.pending, closed.running
        self.succeed, self.failed = closed.succeed, closed.failed
        return self


def _session_from_pb(message: pb.Session, connection: Connection) -> Session:
    metadata = message.metadata or pb.Metadata()
    spec = message.spec or pb.SessionSpec()
    status = message.status or pb.SessionStatus()
    return Session(
        id=metadata.id,
        application=spec.application,
        slots=spec.slots,
        state=_enum(_SESSION_STATES, status.state, "session state"),
        creation_time=_time(status.creation_time),
        pending=status.pending,
        running=status.running,
        succeed=status.succeed,
        failed=status.failed,
        completion_time=_optional_time(status.completion_time),
        connection=connection,
    )


# --------------------------------------------------------------------------
# Watching one task


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
        self._client = client
        self._task_id = task_id
        self._updates: Stream[TaskFields] | None = None
        self._thread = 0
        self._done = False

    def __repr__(self) -> str:
        return f"<TaskWatcher of task {self._task_id} of session {self._client.id}>"

    def __aiter__(self) -> TaskWatcher:
        return self

    async def __anext__(self) -> Task:
        if self._done:
            raise StopAsyncIteration
        try:
            updates = self._updates
            if updates is None:
                updates = await self._open()
            try:
                message = await updates.__anext__()
            except StopAsyncIteration:
                message = await self._after_end()
        except BaseException:
            self._done = True
            with contextlib.suppress(Exception):
                await self._close_stream()
            raise
        if _finished(message):
            self._done = True
            await self._close_stream()
        return _task_from_fields(message)

    async def _open(self) -> Stream[TaskFields]:
        connection = self._client._connection
        connection._check_open()
        request = encode_task_request(self._task_id, self._client.id)
        updates = connection._channel.open_stream(_WATCH_TASK, request, decode_task)
        self._updates, self._thread = updates, threading.get_ident()
        return updates

    async def _after_end(self) -> TaskFields:
        # The stream ended before a final state: the task tells where it is.
        self._done = True
        await self._close_stream()
        message = await self._client._get(self._task_id)
        if not _finished(message):
            raise _watch_ended(self._client._connection, self._client.id, self._task_id, message)
        return message

    async def _close_stream(self) -> None:
        self._close()

    def _close(self) -> None:
        updates, self._updates = self._updates, None
        if updates is not None:
            updates.close()

    async def aclose(self) -> None:
        """Stop watching and close the stream; harmless when already closed."""
        self._done = True
        await self._close_stream()

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
        # Only by the thread that watched: a collection on another thread
        # leaves it to the connection's close.
        if self._updates is not None and self._thread == threading.get_ident():
            self._close()
