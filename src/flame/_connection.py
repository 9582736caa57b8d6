"""The connection to a Flame cluster: applications and sessions.

:func:`connect` (or :meth:`Connection.connect`) opens a :class:`Connection`;
its calls go through one :class:`~flame._calls.FrontendCalls`, which the
session objects it makes (:mod:`flame._session`) share.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from ._calls import FrontendCalls
from ._config import default_auth_token, default_endpoint
from ._errors import FlameError, FlameErrorCode, code_for_result
from ._proto.v04 import flame as pb
from ._session import Session, SessionClient, session_from_pb
from ._transport import MAX_MESSAGE_BYTES, Channel, Keepalive, RetryPolicy
from ._types import (
    Application,
    ApplicationAttributes,
    SessionAttributes,
    SessionID,
    _application_from_pb,
    _application_spec_to_pb,
    _check_id,
    _check_name,
    _invalid,
    _session_spec_to_pb,
)

if TYPE_CHECKING:
    from .functions import FunctionSession

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "Connection",
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
        self, channel: Channel, *, request_timeout: float | None = DEFAULT_CALL_TIMEOUT
    ) -> None:
        # Use Connection.connect(); this is called with an open channel.
        self._calls = FrontendCalls(channel, request_timeout)

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
        ``http(s)://host:port`` URL or a token that cannot be sent,
        ``UNAVAILABLE`` when nothing answers there, ``INVALID_ARGUMENT`` for
        a bad limit or keepalive.
        """
        token = default_auth_token() if auth_token is None else auth_token
        headers = () if token is None else (("authorization", f"Bearer {_check_token(token)}"),)
        channel = await Channel.connect(
            default_endpoint() if addr is None else addr,
            ca_file=ca_file,
            connect_timeout=connect_timeout,
            retry=retry,
            max_message_bytes=max_message_bytes,
            keepalive=keepalive,
            headers=headers,
        )
        return cls(channel, request_timeout=request_timeout)

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
        return f"<Connection to {self.endpoint} ({state})>"

    def _check_result(self, result: pb.Result, call: str, name: str) -> None:
        if result.return_code == 0:
            return
        said = (result.message or "").strip()
        raise FlameError(
            code_for_result(said),
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
        request = pb.RegisterApplicationRequest(
            name=name, application=_application_spec_to_pb(attributes)
        )
        calls = self._calls
        result = await calls.unary(calls.stub.register_application, request)
        self._check_result(result, "RegisterApplication", name)

    async def unregister_application(self, name: str) -> None:
        """Unregister the application ``name``.

        A v0.4 cluster does not implement this call: it raises FlameError
        ``UNIMPLEMENTED`` there.
        """
        name = _check_name(name, "the application name")
        request = pb.UnregisterApplicationRequest(name=name)
        calls = self._calls
        result = await calls.unary(calls.stub.unregister_application, request)
        self._check_result(result, "UnregisterApplication", name)

    async def list_applications(self) -> list[Application]:
        """Every registered application."""
        calls = self._calls
        answer = await calls.unary(calls.stub.list_application, pb.ListApplicationRequest())
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
        calls = self._calls
        return session_from_pb(await calls.unary(calls.stub.create_session, request), calls)

    async def list_sessions(self) -> list[Session]:
        """Every session the cluster knows, open or closed."""
        calls = self._calls
        answer = await calls.unary(calls.stub.list_session, pb.ListSessionRequest())
        return [session_from_pb(message, calls) for message in answer.sessions]

    async def get_session(self, session_id: SessionID) -> Session:
        """The session ``session_id`` as it is now; FlameError ``NOT_FOUND`` if none."""
        request = pb.GetSessionRequest(session_id=_check_id(session_id, "session_id"))
        calls = self._calls
        return session_from_pb(await calls.unary(calls.stub.get_session, request), calls)

    async def close_session(self, session_id: SessionID) -> Session:
        """Close the session ``session_id`` and return it, now ``CLOSED``.

        The cluster closes only a session none of whose tasks is pending or
        running; otherwise it raises FlameError ``INVALID_STATE``.
        """
        session_id = _check_id(session_id, "session_id")
        return session_from_pb(await self._calls.close_session(session_id), self._calls)

    async def delete_session(self, session_id: SessionID) -> Session:
        """Delete the closed session ``session_id`` with its tasks; the session as it was.

        Only a closed session can be deleted: close it first
        (:meth:`close_session`, or leave its ``async with``). An open one is
        refused with FlameError ``INVALID_STATE`` (a v0.4 cluster gives no
        reason; the message says what it means), an unknown id with
        ``NOT_FOUND``. What a deleted session held is gone from the cluster:
        its tasks can no longer be read.
        """
        request = pb.DeleteSessionRequest(session_id=_check_id(session_id, "session_id"))
        calls = self._calls
        return session_from_pb(await calls.unary(calls.stub.delete_session, request), calls)

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
        max_message_bytes=max_message_bytes,
        keepalive=keepalive,
        auth_token=auth_token,
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
