"""A connection to a Flame cluster, blocking: :class:`flame.Connection` on a portal of its own.

Each method is the async one, called on the portal: same arguments, same
checks, same errors. A method is added here in two lines, the second being
``return self._portal.call(partial(self._connection.method, ...))`` (wrapped
by :func:`~flame.sync._session.bind` when it gives sessions).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

import flame as aio

from .. import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    Application,
    ApplicationAttributes,
    Executor,
    Keepalive,
    Node,
    RetryPolicy,
    SessionAttributes,
    SessionID,
    Task,
)
from .._transport import MAX_MESSAGE_BYTES
from ._iterators import BlockingIterator
from ._portal import Portal
from ._session import Session, SessionClient, bind

if TYPE_CHECKING:
    from ._functions import FunctionSession

__all__ = ["Connection", "connect"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class Connection:
    """A connection to a Flame cluster: :class:`flame.Connection`, blocking.

    Open one with :func:`flame.sync.connect` (or :meth:`Connection.connect`)
    and close it with :meth:`close`, or use it as a context manager::

        with flame.sync.connect("http://127.0.0.1:8080") as conn:
            print(conn.list_sessions())

    It runs the async connection on an event loop of its own, on a thread of
    its own, which :meth:`close` stops (as does dropping the connection
    unclosed). Any number of threads may share it; each call blocks only
    the thread that made it.
    """

    def __init__(self, portal: Portal, connection: aio.Connection) -> None:
        # Use connect(); this is given the running portal and the connection on it.
        self._portal = portal
        self._connection = connection
        self._closed = False

    @classmethod
    def connect(
        cls,
        addr: str | None = None,
        *,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        request_timeout: float | None = DEFAULT_CALL_TIMEOUT,
        ca_file: str | None = None,
        retry: RetryPolicy | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        keepalive: Keepalive | None = Keepalive(),  # noqa: B008 - frozen, as the async default
        auth_token: str | None = None,
        wire: str | None = None,
        context: str | None = None,
        backend: str = "asyncio",
        backend_options: Mapping[str, Any] | None = None,
    ) -> Connection:
        """Connect to the cluster at ``addr``: :meth:`flame.Connection.connect`, blocking.

        ``backend`` is the event loop the connection runs on, on its own
        thread: ``"asyncio"`` (the default) or ``"trio"``;
        ``backend_options`` are anyio's (``{"use_uvloop": True}``). The other
        arguments, the endpoint's defaults and the errors are those of the
        async API.
        """
        portal = Portal(backend, backend_options, name="flame.sync")
        try:
            connection = portal.call(
                partial(
                    aio.Connection.connect,
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
            )
        except BaseException:
            portal.close()
            raise
        portal.closed_message = f"the connection to {connection.endpoint} is closed; connect again"
        return cls(portal, connection)

    @property
    def endpoint(self) -> str:
        """The URL this connection talks to."""
        return self._connection.endpoint

    @property
    def wire(self) -> str:
        """The Flame wire the cluster speaks: ``"v0.4"``, ``"v0.5"`` or ``"v0.6"``."""
        return self._connection.wire

    @property
    def backend(self) -> str:
        """The event loop the connection runs on: ``"asyncio"`` or ``"trio"``."""
        return self._portal.backend

    def close(self) -> None:
        """Close the connection and stop its thread; calls still in flight fail.

        Closing twice is harmless.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._portal.call(self._connection.close)
        finally:
            self._portal.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Dropped unclosed: close it on its loop, and let the thread end,
        # without waiting (this may run on any thread, that one included).
        if not getattr(self, "_closed", True):
            self._closed = True
            self._portal.close(self._connection.close, wait=False)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<flame.sync.Connection to {self.endpoint} ({state})>"

    # -- applications ------------------------------------------------------

    def register_application(
        self, name: str, app_attrs: ApplicationAttributes | Mapping[str, Any]
    ) -> None:
        """Register the application ``name``: :meth:`flame.Connection.register_application`."""
        self._portal.call(partial(self._connection.register_application, name, app_attrs))

    def unregister_application(self, name: str) -> None:
        """Unregister the application ``name``: :meth:`flame.Connection.unregister_application`."""
        self._portal.call(partial(self._connection.unregister_application, name))

    def list_applications(self) -> list[Application]:
        """Every registered application."""
        return self._portal.call(self._connection.list_applications)

    def get_application(self, name: str) -> Application:
        """The application ``name``: :meth:`flame.Connection.get_application`."""
        return self._portal.call(partial(self._connection.get_application, name))

    # -- sessions ------------------------------------------------------------

    def create_session(
        self,
        attrs: SessionAttributes | Mapping[str, Any],
        *,
        session_id: SessionID | None = None,
    ) -> Session:
        """Open a session of an application: :meth:`flame.Connection.create_session`.

        The :class:`Session` is also the client for its tasks, and a context
        manager that closes the session on exit::

            with conn.create_session(SessionAttributes("my-app")) as session:
                task = session.run_task(b"echo hello")
        """
        session = self._portal.call(
            partial(self._connection.create_session, attrs, session_id=session_id)
        )
        return bind(self, self._portal, session)

    def open_session(
        self,
        session_id: SessionID,
        attrs: SessionAttributes | Mapping[str, Any] | None = None,
    ) -> Session:
        """Get or create the session ``session_id``: :meth:`flame.Connection.open_session`."""
        session = self._portal.call(partial(self._connection.open_session, session_id, attrs))
        return bind(self, self._portal, session)

    def list_sessions(self) -> list[Session]:
        """Every session the cluster knows, open or closed."""
        sessions = self._portal.call(self._connection.list_sessions)
        return [bind(self, self._portal, session) for session in sessions]

    def get_session(self, session_id: SessionID) -> Session:
        """The session ``session_id`` as it is now; FlameError ``NOT_FOUND`` if none."""
        session = self._portal.call(partial(self._connection.get_session, session_id))
        return bind(self, self._portal, session)

    def close_session(self, session_id: SessionID) -> Session:
        """Close the session ``session_id``: :meth:`flame.Connection.close_session`."""
        session = self._portal.call(partial(self._connection.close_session, session_id))
        return bind(self, self._portal, session)

    def delete_session(self, session_id: SessionID) -> Session:
        """Delete the closed session ``session_id``: :meth:`flame.Connection.delete_session`."""
        session = self._portal.call(partial(self._connection.delete_session, session_id))
        return bind(self, self._portal, session)

    def list_tasks(self, session_id: SessionID) -> BlockingIterator[Task]:
        """Every task of the session, streamed: :meth:`flame.Connection.list_tasks`, blocking::

        for task in conn.list_tasks(session.id):
            print(task.id, task.state)
        """
        return BlockingIterator(self._portal, self._connection.list_tasks(session_id), self)

    # -- the cluster ------------------------------------------------------------

    def list_executors(self) -> list[Executor]:
        """Every executor the cluster knows: :meth:`flame.Connection.list_executors`."""
        return self._portal.call(self._connection.list_executors)

    def list_nodes(self) -> list[Node]:
        """Every node the cluster knows: :meth:`flame.Connection.list_nodes`."""
        return self._portal.call(self._connection.list_nodes)

    def session_client(self, session_id: SessionID) -> SessionClient:
        """A client for the tasks of the session ``session_id``, without asking the cluster."""
        return bind(self, self._portal, self._connection.session_client(session_id))

    # -- Python functions ----------------------------------------------------

    @overload
    def function_session(
        self,
        function: Callable[_P, Awaitable[_R]],
        /,
        *,
        application: str = ...,
        command: str | None = ...,
        **session_options: Any,
    ) -> FunctionSession[_P, _R]: ...

    @overload
    def function_session(
        self,
        function: Callable[_P, _R],
        /,
        *,
        application: str = ...,
        command: str | None = ...,
        **session_options: Any,
    ) -> FunctionSession[_P, _R]: ...

    def function_session(
        self, function: Callable[..., Any], /, **options: Any
    ) -> FunctionSession[Any, Any]:
        """Open a session whose tasks are calls of ``function``, blocking.

        :meth:`flame.Connection.function_session` with no ``await``::

            with conn.function_session(square, slots=1) as f:
                print(f(3), f.map(range(10)))
        """
        from ._functions import FunctionSession

        functions = self._portal.call(
            partial(self._connection.function_session, function, **options)
        )
        return FunctionSession(self, self._portal, functions)


def connect(
    addr: str | None = None,
    *,
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    request_timeout: float | None = DEFAULT_CALL_TIMEOUT,
    ca_file: str | None = None,
    retry: RetryPolicy | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    keepalive: Keepalive | None = Keepalive(),  # noqa: B008 - frozen, as the async default
    auth_token: str | None = None,
    wire: str | None = None,
    context: str | None = None,
    backend: str = "asyncio",
    backend_options: Mapping[str, Any] | None = None,
) -> Connection:
    """Connect to a Flame cluster, blocking; the same as :meth:`Connection.connect`."""
    return Connection.connect(
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
        backend=backend,
        backend_options=backend_options,
    )
