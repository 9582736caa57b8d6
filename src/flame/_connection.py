"""The connection to a Flame cluster: applications and sessions.

:func:`connect` (or :meth:`Connection.connect`) opens a :class:`Connection`;
its calls go through one :class:`~flame._calls.FrontendCalls`, which the
session objects it makes (:mod:`flame._session`) share.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from ._calls import FrontendCalls, detect_wire
from ._config import client_config, default_auth_token
from ._errors import FlameError, FlameErrorCode, code_for_result
from ._session import Session, SessionClient, session_from_fields
from ._transport import MAX_MESSAGE_BYTES, Channel, Keepalive, RetryPolicy, Stream
from ._types import (
    Application,
    ApplicationAttributes,
    Executor,
    Node,
    SessionAttributes,
    SessionID,
    Task,
    _check_id,
    _check_name,
    _invalid,
    _task_from_fields,
)
from ._wire import TaskFields
from ._wires import Call, check_wire_name, wire_for

if TYPE_CHECKING:
    from .functions import FunctionSession

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "Connection",
    "TaskList",
    "connect",
    "frontend_calls",
]

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds :meth:`Connection.connect` waits for the cluster to accept the connection."""
DEFAULT_CALL_TIMEOUT = 60.0
"""Seconds a single request may take (watches are not bounded: tasks may run long)."""
_DEFAULT_KEEPALIVE = Keepalive()

_C = TypeVar("_C", bound="Connection")
_P = ParamSpec("_P")
_R = TypeVar("_R")


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
        self,
        channel: Channel,
        *,
        request_timeout: float | None = DEFAULT_CALL_TIMEOUT,
        wire: str = "v0.4",
    ) -> None:
        # Use Connection.connect(); this is called with an open channel and its wire.
        self._calls = FrontendCalls(channel, request_timeout, wire_for(wire))

    @classmethod
    async def connect(
        cls: type[_C],
        addr: str | None = None,
        *,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        request_timeout: float | None = DEFAULT_CALL_TIMEOUT,
        ca_file: str | None = None,
        retry: RetryPolicy | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        keepalive: Keepalive | None = _DEFAULT_KEEPALIVE,
        auth_token: str | None = None,
        wire: str | None = None,
        context: str | None = None,
    ) -> _C:
        """Connect to the cluster at ``addr``, such as ``"http://localhost:8080"``.

        With no ``addr``, the endpoint, the CA file and the wire come from
        the configuration: ``FLAME_ENDPOINT``, else
        the current context of ``~/.flame/flame.yaml`` (``context`` names
        another), else ``~/.flame/flame-conf.yaml``, else
        :data:`DEFAULT_FLAME_ENDPOINT`. ``https://`` endpoints use TLS
        (``ca_file`` names extra trusted certificates). ``connect_timeout``
        bounds the wait for the cluster to accept the connection;
        ``request_timeout`` bounds each later request (``None``: no bound),
        and is sent to the cluster as the request's deadline. ``retry`` (a
        :class:`RetryPolicy`; by default 3 attempts, pausing 10 ms then
        40 ms) says how a request the cluster refused without processing it
        is made again.

        ``wire`` (``"v0.4"``, ``"v0.5"`` or ``"v0.6"``) says which Flame
        wire the cluster speaks; by default the configuration's, else the
        cluster is asked, by one or two calls that change nothing
        (:attr:`wire` tells the answer).

        ``max_message_bytes`` (4 MiB by default, as the cluster's) is the
        largest request sent: a larger task input or common data is refused
        here, before anything is sent; replies (a task carries its input and
        its output) are accepted up to twice that and 64 KiB. ``keepalive``
        (a :class:`Keepalive`; by default a PING after 30 s of silence while
        calls are in flight, given up 20 s later; None: never) finds a
        connection whose cluster stopped answering without closing it.
        ``auth_token`` is sent with every request (``authorization: Bearer``);
        with none, ``FLAME_AUTH_TOKEN``, else the ``auth_token`` of the
        ``flame`` context in ``~/.flame/flame-conf.yaml``, is sent if set.

        Raises FlameError: ``INVALID_CONFIG`` for an address that is not an
        ``http(s)://host:port`` URL, a token that cannot be sent, a wire not
        among those, or a plaintext address of a cluster that speaks TLS;
        ``UNAVAILABLE`` when nothing answers there; ``INVALID_ARGUMENT`` for a
        bad limit or keepalive.
        """
        if wire is not None:
            wire = check_wire_name(wire)
        if addr is None:
            config = client_config(context)
            addr = config.endpoint
            ca_file = config.ca_file if ca_file is None else ca_file
            wire = config.wire if wire is None else wire
            token = config.auth_token if auth_token is None else auth_token
        elif context is not None:
            raise _invalid(
                f"both an address ({addr!r}) and a context ({context!r}) were given; "
                "give the address alone, or the context alone"
            )
        else:
            token = default_auth_token() if auth_token is None else auth_token
        headers = () if token is None else (("authorization", f"Bearer {_check_token(token)}"),)
        channel = await Channel.connect(
            addr,
            ca_file=ca_file,
            connect_timeout=connect_timeout,
            retry=retry,
            max_message_bytes=max_message_bytes,
            keepalive=keepalive,
            headers=headers,
        )
        try:
            if wire is None:
                wire = await detect_wire(channel, request_timeout)
        except BaseException:
            await channel.aclose()
            raise
        return cls(channel, request_timeout=request_timeout, wire=wire)

    @property
    def wire(self) -> str:
        """The Flame wire the cluster speaks: ``"v0.4"``, ``"v0.5"`` or ``"v0.6"``."""
        return self._calls.wire.name

    @property
    def endpoint(self) -> str:
        """The URL this connection talks to."""
        return self._calls.endpoint

    async def close(self) -> None:
        """Close the connection; calls still in flight fail. Closing twice is harmless."""
        await self._calls.close()

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
        state = "closed" if self._calls.closed else "open"
        return f"<Connection to {self.endpoint} ({self.wire}, {state})>"

    def _check_result(self, result: tuple[int, str | None], call: str, name: str) -> None:
        return_code, message = result
        if return_code == 0:
            return
        said = (message or "").strip()
        raise FlameError(
            code_for_result(said),
            f"{call} of application {name!r} on {self.endpoint} was refused "
            f"(code {return_code}): {said or 'no reason given'}",
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
        an empty name, a missing shim or a bad attribute, ``ALREADY_EXISTS``
        when the name is taken, and ``INVALID_STATE`` when the cluster
        refuses for another reason.
        """
        name = _check_name(name, "the application name")
        attributes = ApplicationAttributes._coerce(app_attrs)
        if attributes.name and attributes.name != name:
            raise _invalid(
                f"the application is registered as {name!r} but its attributes name it "
                f"{attributes.name!r}; leave the attributes' name empty or make them agree"
            )
        calls = self._calls
        result = await calls.call(calls.wire.register_application(name, attributes))
        self._check_result(result, "RegisterApplication", name)

    async def unregister_application(self, name: str) -> None:
        """Unregister the application ``name``.

        A v0.4 cluster does not implement this call: it raises FlameError
        ``UNIMPLEMENTED`` there.
        """
        name = _check_name(name, "the application name")
        calls = self._calls
        result = await calls.call(calls.wire.unregister_application(name))
        self._check_result(result, "UnregisterApplication", name)

    async def list_applications(self) -> list[Application]:
        """Every registered application."""
        calls = self._calls
        return await calls.call(calls.wire.list_applications())

    async def get_application(self, name: str) -> Application:
        """The application ``name``; FlameError ``NOT_FOUND`` if none.

        A v0.4 session manager does not implement this call (``UNIMPLEMENTED``;
        the embedded cluster does): use :meth:`list_applications` there.
        """
        name = _check_name(name, "the application name")
        calls = self._calls
        return await calls.call(calls.wire.get_application(name))

    # -- sessions ------------------------------------------------------------

    async def create_session(
        self,
        attrs: SessionAttributes | Mapping[str, Any],
        *,
        session_id: SessionID | None = None,
    ) -> Session:
        """Open a session of an application; it accepts tasks until closed.

        ``attrs`` is a :class:`SessionAttributes` (or a dict of its fields).
        The returned :class:`Session` is also the client for its tasks, and an
        async context manager that closes the session on exit::

            async with await conn.create_session(SessionAttributes("my-app")) as session:
                task = await session.run_task(b"echo hello")

        On v0.6 the client chooses the session's id: ``session_id`` (or
        ``attrs.id``), else one is made (``<application>-<6 letters or
        digits>``). On v0.4 and v0.5 the cluster makes it, and giving one is
        refused (FlameError ``INVALID_ARGUMENT``). A v0.6 cluster refuses an
        id in use with ``INVALID_STATE``.
        """
        attributes = SessionAttributes._coerce(attrs)
        chosen = _chosen_id(attributes, session_id)
        calls = self._calls
        fields = await calls.call(calls.wire.create_session(attributes, chosen))
        return session_from_fields(fields, calls)

    async def open_session(
        self,
        session_id: SessionID,
        attrs: SessionAttributes | Mapping[str, Any] | None = None,
    ) -> Session:
        """The open session ``session_id``, created with ``attrs`` if there is none (v0.6).

        Get or create: with ``attrs``, a v0.6 cluster creates the session
        when it does not exist, and refuses (``INVALID_ARGUMENT``) when it
        exists with another spec (application, resreq, min_instances,
        max_instances, priority); without, it must exist (``NOT_FOUND``). A
        closed session is refused (``INVALID_ARGUMENT`` on v0.6).

        v0.4 and v0.5 have no get-or-create: ``attrs`` is refused there
        (``INVALID_ARGUMENT``), and the id alone opens an existing session
        where the cluster implements OpenSession (the embedded cluster
        does); a v0.4 or v0.5 session manager raises ``UNIMPLEMENTED``.
        """
        session_id = _check_id(session_id, "session_id")
        attributes = None if attrs is None else SessionAttributes._coerce(attrs)
        if attributes is not None and attributes.id not in (None, session_id):
            raise _invalid(
                f"open_session({session_id!r}) was given attributes with id "
                f"{attributes.id!r}; leave the attributes' id empty or make them agree"
            )
        calls = self._calls
        fields = await calls.call(calls.wire.open_session(session_id, attributes))
        return session_from_fields(fields, calls)

    async def list_sessions(self) -> list[Session]:
        """Every session the cluster knows, open or closed."""
        calls = self._calls
        return [session_from_fields(f, calls) for f in await calls.call(calls.wire.list_sessions())]

    async def get_session(self, session_id: SessionID) -> Session:
        """The session ``session_id`` as it is now; FlameError ``NOT_FOUND`` if none."""
        session_id = _check_id(session_id, "session_id")
        calls = self._calls
        return session_from_fields(await calls.call(calls.wire.get_session(session_id)), calls)

    async def close_session(self, session_id: SessionID) -> Session:
        """Close the session ``session_id`` and return it, now ``CLOSED``.

        A v0.4 or v0.5 cluster closes only a session none of whose tasks is
        pending or running, and a v0.6 cluster one none of whose tasks is
        running (its pending tasks become ``CANCELLED``); otherwise it
        raises FlameError ``INVALID_STATE``.
        """
        session_id = _check_id(session_id, "session_id")
        calls = self._calls
        return session_from_fields(await calls.call(calls.wire.close_session(session_id)), calls)

    def list_tasks(self, session_id: SessionID) -> TaskList:
        """Every task of the session ``session_id``, streamed (v0.6).

        No ``await`` is needed: the stream opens at the first iteration, and
        closes at its end, when the loop is left, or at ``aclose()``::

            async for task in conn.list_tasks(session.id):
                print(task.id, task.state)

        The tasks come in no particular order, each with its input and
        output, as they were when the call reached the cluster. Raises
        FlameError ``UNIMPLEMENTED`` on v0.4 and v0.5 (at once), and
        ``NOT_FOUND`` (at the first iteration) for an unknown session.
        """
        session_id = _check_id(session_id, "session_id")
        calls = self._calls
        return TaskList(calls, calls.wire.list_tasks(session_id), session_id)

    # -- the cluster ----------------------------------------------------------

    async def list_executors(self) -> list[Executor]:
        """Every executor the cluster knows (v0.5, v0.6; ``UNIMPLEMENTED`` on v0.4)."""
        calls = self._calls
        return await calls.call(calls.wire.list_executors())

    async def list_nodes(self) -> list[Node]:
        """Every node the cluster knows (v0.6; ``UNIMPLEMENTED`` on v0.4 and v0.5)."""
        calls = self._calls
        return await calls.call(calls.wire.list_nodes())

    async def delete_session(self, session_id: SessionID) -> Session:
        """Delete the closed session ``session_id`` with its tasks; the session as it was.

        Only a closed session can be deleted: close it first
        (:meth:`close_session`, or leave its ``async with``). An open one is
        refused with FlameError ``INVALID_STATE`` (a v0.4 cluster gives no
        reason; the message says what it means), an unknown id with
        ``NOT_FOUND``. A v0.6 cluster also refuses a session some of whose
        tasks were cancelled. What a deleted session held is gone from the
        cluster: its tasks can no longer be read.
        """
        session_id = _check_id(session_id, "session_id")
        calls = self._calls
        return session_from_fields(await calls.call(calls.wire.delete_session(session_id)), calls)

    def session_client(self, session_id: SessionID) -> SessionClient:
        """A client for the tasks of the session ``session_id``, without asking the cluster.

        Use it when the id is known already (from another process, say) and
        the session's fields are not needed. Same as ``SessionClient(conn, id)``.
        """
        return SessionClient(self, session_id)

    # -- Python functions ----------------------------------------------------

    @overload
    async def function_session(
        self,
        function: Callable[_P, Awaitable[_R]],
        /,
        *,
        application: str = ...,
        command: str | None = ...,
        **session_options: Any,
    ) -> FunctionSession[_P, _R]: ...

    @overload
    async def function_session(
        self,
        function: Callable[_P, _R],
        /,
        *,
        application: str = ...,
        command: str | None = ...,
        **session_options: Any,
    ) -> FunctionSession[_P, _R]: ...

    async def function_session(
        self, function: Callable[..., Any], /, **options: Any
    ) -> FunctionSession[Any, Any]:
        """Open a session whose tasks are calls of the Python ``function``.

        ::

            async with await conn.function_session(square, slots=1) as f:
                print(await f(3), await f.map(range(10)))

        The function (cloudpickled once, into the session's common data) runs
        in the generic service shipped with the SDK, which runs in the
        application ``application`` (default ``"flame-functions"``), registered
        here on first use with ``command`` (default: this Python) and the
        arguments ``-m flame.functions``. Other keywords are the
        :class:`SessionAttributes` of the session (``slots``, ...). See
        :func:`flame.functions.open_function_session` for the checks made and
        the errors raised.
        """
        from .functions import open_function_session

        return await open_function_session(self, function, **options)


def _chosen_id(attributes: SessionAttributes, session_id: object) -> str | None:
    """The session id the caller chose, by argument or in the attributes (None: none)."""
    if session_id is None:
        return attributes.id
    chosen = _check_id(session_id, "session_id")
    if attributes.id not in (None, chosen):
        raise _invalid(
            f"session_id={chosen!r} and the attributes' id {attributes.id!r} differ; "
            "give one of them"
        )
    return chosen


class TaskList:
    """An async iterator over the tasks of one session, from one ListTask stream.

    Returned by :meth:`Connection.list_tasks`. The stream is opened at the
    first iteration and closed at its end, when the loop is left by an
    exception or a cancellation, by :meth:`aclose`, or when leaving ``async
    with``; one dropped in the middle (``break``) is closed as it is
    collected. It is iterated once.
    """

    def __init__(self, calls: FrontendCalls, call: Call[TaskFields], session_id: str) -> None:
        self._calls = calls
        self._call = call
        self._session_id = session_id
        self._stream: Stream[TaskFields] | None = None
        self._done = False

    def __repr__(self) -> str:
        return f"<TaskList of session {self._session_id}>"

    def __aiter__(self) -> TaskList:
        return self

    async def __anext__(self) -> Task:
        if self._done:
            raise StopAsyncIteration
        calls = self._calls
        try:
            if self._stream is None:
                self._stream = calls.open_stream(self._call)
            message = await self._stream.__anext__()
        except StopAsyncIteration:
            self.close()
            raise
        except FlameError as error:
            self.close()
            raise calls.wire.refine(self._call.name, error) from None
        except BaseException:
            self.close()
            raise
        return _task_from_fields(message, calls.scale)

    def close(self) -> None:
        """End the stream now; harmless when already ended."""
        self._done = True
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    async def aclose(self) -> None:
        """Stop listing and close the stream; harmless when already closed."""
        self.close()

    async def __aenter__(self) -> TaskList:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Closing a stream awaits nothing: its reset is written now.
        if self._stream is not None:
            self.close()


def frontend_calls(connection: Connection) -> FrontendCalls:
    """The calls ``connection`` makes, which the session objects made on it share."""
    return connection._calls


async def connect(
    addr: str | None = None,
    *,
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    request_timeout: float | None = DEFAULT_CALL_TIMEOUT,
    ca_file: str | None = None,
    retry: RetryPolicy | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    keepalive: Keepalive | None = _DEFAULT_KEEPALIVE,
    auth_token: str | None = None,
    wire: str | None = None,
    context: str | None = None,
) -> Connection:
    """Connect to a Flame cluster; the same as :meth:`Connection.connect`.

    With no ``addr``, the endpoint is ``FLAME_ENDPOINT`` if set, else that of
    the current context of ``~/.flame/flame.yaml`` (or of ``context``), else
    the ``endpoint`` of ``~/.flame/flame-conf.yaml``, else
    :data:`DEFAULT_FLAME_ENDPOINT`. ``wire`` names the Flame wire the cluster
    speaks (one of ``"v0.4"``, ``"v0.5"``, ``"v0.6"``); by default it is
    found by asking the cluster.
    """
    return await Connection.connect(
        addr,
        connect_timeout=connect_timeout,
        request_timeout=request_timeout,
        ca_file=ca_file,
        retry=retry,
        max_message_bytes=max_message_bytes,
        keepalive=keepalive,
        auth_token=auth_token,
        wire=wire,
        context=context,
    )


def _check_token(token: object) -> str:
    """``token`` if it can go in an HTTP header; INVALID_CONFIG saying why not."""
    if (
        not isinstance(token, str)
        or not token
        or not token.isascii()
        or not token.isprintable()
        or " " in token
    ):
        raise FlameError(
            FlameErrorCode.INVALID_CONFIG,
            "the auth token must be a non-empty string of printable ASCII without spaces "
            "(it is sent in an HTTP header); give the cluster's auth_token as it is",
        )
    return token
