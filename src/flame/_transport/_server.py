"""The server side: grpclib's server, what we change in it, and handlers for it.

Our servers (the embedded cluster's ``Frontend``, the service runtime's
``GrpcShim`` or ``Instance``, the Grpc shim's ``GrpcServiceManager``) are
grpclib servers, run where grpclib runs (:mod:`._loop`). Here:

* :func:`serve` runs one for the length of an ``async with``, on TCP or on
  a Unix socket (:class:`_UnixListener`); every request
  passes the edge of its connection first (:mod:`._edge`: the message size,
  the token, idle connections, the connection cap), and is read through a
  checker of its wire's types (:func:`flame._wire_check.checked`), whatever
  service serves it;
* :func:`unary_handler` and :func:`server_stream_handler` serve a method
  with the hand-written codec of :mod:`flame._wire` instead of the generic
  one; :func:`refuse` fails a call with a named gRPC status;
* :class:`_ServingProtocol` gathers what grpclib writes in one turn of the
  loop into one send (:class:`_BatchedWrites`), allows more concurrent
  streams than h2's default, remembers fewer closed ones, and puts the edge
  between h2 and grpclib.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar, cast

import anyio
import anyio.abc
import betterproto2
import grpclib.const
import grpclib.exceptions
import grpclib.protocol
import grpclib.server
import h2.exceptions
import h2.settings
from grpclib.const import Cardinality, Status

from .._errors import FlameError, FlameErrorCode
from .._wire_check import checked
from ._edge import Gate, ServerEdge
from ._limits import DEFAULT_MAX_CONNECTIONS, ServerLimits
from ._loop import GrpcLoop

log = logging.getLogger("flame.transport.server")

__all__ = [
    "CLOSED_STREAMS_KEPT",
    "SERVER_MAX_STREAMS",
    "Server",
    "pid",
    "refuse",
    "serve",
    "server_stream_handler",
    "unary_handler",
]

T = TypeVar("T")


class _BatchedWrites:
    """A transport that sends what grpclib writes in one turn of the event loop at once.

    grpclib writes each HTTP/2 frame group as soon as it has it: the headers
    of a call, then its message, then (on a server) the trailers, each a
    system call of its own. With many calls in flight, that is several sends
    per call where one per loop turn would do. Here writes are gathered and
    sent by a callback scheduled with ``call_soon``, which runs right after
    the callbacks of the current turn: the same bytes in the same order,
    sent before the loop waits for anything again.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


#: How many closed streams a connection remembers (h2 keeps 65,536 by default).
#: h2 uses them to answer a frame that arrives after its stream was reset; a
#: frame comes that late only after a few streams, not thousands, have closed
#: since. With two streams per task, the default made a long-lived
#: connection's memory grow over its first 32,768 tasks; this bound is
#: reached after 8,192.
CLOSED_STREAMS_KEPT = 16_384

#: Seconds a stopping server waits for its handlers and connections to end.
STOP_GRACE = 10.0

#: How many streams a client may have open at once on our servers. h2 offers
#: 100; a client running tasks holds one watch per task in flight, and beyond
#: the limit grpclib queues new calls, waking every queued one at each close.
SERVER_MAX_STREAMS = 1024


class _ServingProtocol(grpclib.protocol.H2Protocol):  # type: ignore[misc,unused-ignore]
    """A server connection: batched writes, room for many streams, a bounded memory, an edge.

    A server answers many calls in one turn of its loop, and one send for
    all of them halves its system calls. The limits are set on h2's state
    through guarded private attributes (an h2 upgrade could silently undo
    them; a test checks they hold). What arrives passes the connection's
    :class:`~._edge.Gate` before grpclib sees it.
    """

    #: Set by the server that makes the protocol.
    edge: ServerEdge

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writes = _BatchedWrites(cast(asyncio.Transport, transport))
        super().connection_made(cast(Any, writes))
        h2_connection = getattr(self.connection, "_connection", None)
        closed = getattr(h2_connection, "_closed_streams", None)
        if closed is not None and hasattr(closed, "_size_limit"):
            closed._size_limit = CLOSED_STREAMS_KEPT
        if h2_connection is not None:
            h2_connection.update_settings(
                {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: SERVER_MAX_STREAMS}
            )
            self.connection.flush()
        self.gate = Gate(self.edge, h2_connection, self.connection, self.processor, writes)

    def data_received(self, data: bytes) -> None:
        # grpclib's own, with the gate between h2's events and grpclib.
        try:
            events = self.connection.feed(data)
        except h2.exceptions.ProtocolError:
            log.debug("protocol error", exc_info=True)
            self.processor.close("Protocol error")
            return
        self.connection.flush()
        admit = self.gate.admit
        process = self.processor.process
        for event in events:
            if admit(event):
                process(event)
        self.connection.flush()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.gate.closed()
        super().connection_lost(exc)


class _BatchingServer(grpclib.server.Server):  # type: ignore[misc,unused-ignore]
    """grpclib's server, its connections those of :class:`_ServingProtocol`."""

    def __init__(self, handlers: list[Any], edge: ServerEdge) -> None:
        super().__init__(handlers)
        self._edge = edge

    def _protocol_factory(self) -> grpclib.protocol.H2Protocol:
        protocol = super()._protocol_factory()
        # grpclib builds the protocol with its handler; the class changes,
        # and the edge of this server is given to it.
        protocol.__class__ = _ServingProtocol
        cast(_ServingProtocol, protocol).edge = self._edge
        return protocol


class Server(Generic[T]):
    """A running gRPC server; :attr:`port` and :attr:`address` say where.

    A server on a Unix socket has its filesystem ``path``, and no host or port.
    """

    def __init__(self, host: str, port: int, *, tls: bool = False, path: str | None = None) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.path = path

    @property
    def address(self) -> str:
        """The endpoint a client connects to: ``http://host:port`` (``https`` with
        TLS), or ``unix:PATH``."""
        if self.path is not None:
            return f"unix:{self.path}"
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


def _connection_cap(limits: ServerLimits) -> int:
    """How many connections a server holds: the limits', or the default within the files allowed."""
    if limits.max_connections is not None:
        return limits.max_connections
    try:
        import resource

        files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # pragma: no cover - not a Unix
        return DEFAULT_MAX_CONNECTIONS
    if files <= 0:  # RLIM_INFINITY
        return DEFAULT_MAX_CONNECTIONS
    # Half: the process needs files for more than its connections.
    return max(1, min(DEFAULT_MAX_CONNECTIONS, files // 2))


class _CheckedService:
    """A service whose methods read their requests through :func:`flame._wire_check.checked`.

    Every generated request class is replaced by a reader that checks the
    message against its wire's types and refuses it with INVALID_ARGUMENT,
    naming the field, before the method sees it. A reader the handler brings
    (the hand-written codec of :func:`unary_handler`) is left as it is.
    """

    def __init__(self, service: Any) -> None:
        self._service = service

    def __mapping__(self) -> dict[str, Any]:
        mapping: dict[str, Any] = self._service.__mapping__()
        return {path: _checked_handler(handler) for path, handler in mapping.items()}


def _checked_handler(handler: Any) -> Any:
    request_type = handler.request_type
    if isinstance(request_type, type) and issubclass(request_type, betterproto2.Message):
        return handler._replace(request_type=_request_reader(checked(request_type)))
    return handler


@contextlib.asynccontextmanager
async def serve(
    loop: GrpcLoop,
    handlers: Sequence[Any],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl: ssl.SSLContext | None = None,
    limits: ServerLimits | None = None,
    auth_token: str | None = None,
    path: str | None = None,
) -> AsyncIterator[Server[Any]]:
    """Serve the generated service ``handlers`` on ``host:port`` for the ``async with``.

    Port 0 takes a free port. With ``ssl`` (a server-side context holding the
    certificate), clients connect with TLS to ``https://``. With ``path``,
    the server listens on a Unix socket created there instead (a stale
    socket file in its place is replaced), plaintext. Leaving closes the
    listening socket and every connection, and waits until the server has
    stopped, its handlers included.

    Every request is checked at the edge: its size against ``limits``
    (:class:`ServerLimits`; the defaults if None) from its length prefix, its
    ``authorization`` against ``auth_token`` if one is given, and its fields
    against the types of its wire (:func:`flame._wire_check.checked`) before
    the method sees it. ``limits`` also bounds how long a connection stays
    idle and how many are held; see :mod:`._edge`.
    """
    context = ssl
    if context is not None:
        # gRPC is HTTP/2: a TLS peer must be offered h2 by ALPN.
        context.set_alpn_protocols(["h2"])
    if path is not None and context is not None:
        raise FlameError(
            FlameErrorCode.INVALID_ARGUMENT, f"a Unix socket ({path}) is served without TLS"
        )
    limits = limits if limits is not None else ServerLimits()
    edge = ServerEdge(limits, auth_token, _connection_cap(limits))

    async def run_server(*, task_status: anyio.abc.TaskStatus[Server[Any]]) -> None:
        server = _BatchingServer([_CheckedService(h) for h in handlers], edge)
        where = path if path is not None else f"{host}:{port}"
        listening: _UnixListener | None = None
        try:
            if path is not None:
                listening = _UnixListener(path)
                await server.start(sock=listening.socket)
            else:
                await server.start(host, port, reuse_address=True, ssl=context)
        except OSError as exc:
            if listening is not None:
                listening.close()
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"cannot serve on {where}: {exc.strerror or exc}",
            ) from None
        try:
            if path is not None:
                task_status.started(Server("", 0, path=path))
            else:
                sockets = getattr(server._server, "sockets", None) or ()
                bound = sockets[0].getsockname()[1] if sockets else port
                task_status.started(Server(host, bound, tls=context is not None))
            await asyncio.Event().wait()
        finally:
            server.close()
            # Since Python 3.12 a server waits for its connections to end,
            # and a client may keep its own open for as long as it likes (an
            # executor does): each is told to go away and closed.
            edge.close_all("the server is stopping")
            with anyio.move_on_after(STOP_GRACE, shield=True) as waited:
                await server.wait_closed()
            if waited.cancelled_caught:
                log.warning(
                    "the server on %s stopped without its handlers: they were still "
                    "running %g s after it was told to stop",
                    where,
                    STOP_GRACE,
                )
            if listening is not None:
                listening.close()

    async with loop.background(run_server) as server:
        yield server


#: The longest path a Unix socket can be connected at (``sun_path``, less its NUL).
UNIX_PATH_MAX = 107 if sys.platform.startswith("linux") else 103


class _UnixListener:
    """A listening Unix socket whose file appears at ``path`` only once it listens.

    A client that waits for the file and then connects (as a Flame executor
    does with its service's socket) must not find it before the server
    accepts: the socket is bound under a temporary name in the same
    directory, set listening, then renamed into place, replacing a stale
    file. :meth:`close` removes the file, if it is still this socket's.
    """

    def __init__(self, path: str) -> None:
        if len(os.fsencode(path)) > UNIX_PATH_MAX:
            raise OSError(
                errno.ENAMETOOLONG,
                f"the path is {len(os.fsencode(path))} bytes long, and a Unix socket's "
                f"may be at most {UNIX_PATH_MAX}",
            )
        self.path = path
        temporary = os.path.join(os.path.dirname(path), f".{secrets.token_hex(6)}.sock")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.socket.bind(temporary)
            try:
                self.socket.listen(128)
                self._identity = _identity(temporary)
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except BaseException:
            self.socket.close()
            raise

    def close(self) -> None:
        self.socket.close()
        with contextlib.suppress(OSError):
            if _identity(self.path) == self._identity:
                os.unlink(self.path)


def _identity(path: str) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


_request_readers: dict[Callable[[bytes], Any], type] = {}


def _request_reader(decode: Callable[[bytes], Any]) -> type:
    """A class grpclib's codec reads requests with: its ``FromString`` is ``decode``.

    A request ``decode`` refuses (ValueError) ends the call with
    INVALID_ARGUMENT saying why; left to grpclib, it would be logged as a
    crash and answered "Internal Server Error", blaming the server for the
    client's mistake.
    """
    reader = _request_readers.get(decode)
    if reader is None:

        def read(data: bytes) -> Any:
            try:
                return decode(data)
            except ValueError as exc:
                raise grpclib.exceptions.GRPCError(
                    Status.INVALID_ARGUMENT, f"the request cannot be read: {exc}"
                ) from None

        reader = type("_Request", (), {"FromString": staticmethod(read)})
        _request_readers[decode] = reader
    return reader


def unary_handler(
    fn: Callable[..., Awaitable[Any]],
    decode: Callable[[bytes], Any],
    reply_type: type,
    *,
    metadata: bool = False,
) -> Any:
    """A server handler for a unary method: ``decode`` reads the request, ``fn`` answers.

    For a service's ``__mapping__``, in place of the generated handler of a
    method called once per task: the request is read by ``decode`` (see
    :mod:`flame._wire`) rather than by the generic codec, and the reply (an
    instance of ``reply_type``) is sent as its ``SerializeToString`` gives it.
    Refusals are raised as with the generated handlers (:func:`refuse`).
    With ``metadata``, ``fn`` is called as ``fn(request, metadata)``, the
    second a ``{name: value}`` dict of the call's text headers (for a name
    sent more than once, its last value).
    """

    async def handle(stream: Any) -> None:
        request = await _read_request(stream)
        await stream.send_message(await fn(request))

    async def handle_with_metadata(stream: Any) -> None:
        request = await _read_request(stream)
        said = {
            name: value for name, value in (stream.metadata or {}).items() if isinstance(value, str)
        }
        await stream.send_message(await fn(request, said))

    return grpclib.const.Handler(
        handle_with_metadata if metadata else handle,
        Cardinality.UNARY_UNARY,
        _request_reader(decode),
        reply_type,
    )


def server_stream_handler(
    fn: Callable[[Any], AsyncIterator[Any]], decode: Callable[[bytes], Any], reply_type: type
) -> Any:
    """A server handler for a server-streaming method, as :func:`unary_handler` is for unary."""

    async def handle(stream: Any) -> None:
        request = await _read_request(stream)
        replies = fn(request)
        try:
            async for reply in replies:
                await stream.send_message(reply)
        finally:
            aclose = getattr(replies, "aclose", None)
            if aclose is not None:
                await aclose()

    return grpclib.const.Handler(
        handle, Cardinality.UNARY_STREAM, _request_reader(decode), reply_type
    )


async def _read_request(stream: Any) -> Any:
    # The reader (see _request_reader) refuses what it cannot read.
    return await stream.recv_message()


def pid() -> int:
    """This process's id (a seam for tests of the service contract)."""
    return os.getpid()


def refuse(status: str, message: str) -> Exception:
    """An exception that fails the server call raising it with ``status`` and ``message``.

    ``status`` is a gRPC status name such as ``"INTERNAL"`` or
    ``"FAILED_PRECONDITION"``; handlers outside this module use it so that
    they need not know grpclib.
    """
    return grpclib.exceptions.GRPCError(Status[status], message)
