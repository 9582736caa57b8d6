"""A scripted HTTP/2 server, to meet our client connection with peers grpclib never is.

Built on h2 (sans-IO) over an anyio TCP listener, so it runs on the test's own
backend, whichever the client runs on. Each test hands in a handler that
decides how every request is answered, frame by frame when it must.

Everything the server learns (requests, resets, window updates, ping acks,
the client's protocol errors as h2 sees them) is recorded, and
:meth:`ScriptedServer.wait_for` waits on any of it without polling: the
server wakes its waiters whenever it has taken in frames.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import Frame

Header = tuple[str, str]

GRPC_HEADERS: list[Header] = [(":status", "200"), ("content-type", "application/grpc")]


def grpc(payload: bytes, *, flag: int = 0, length: int | None = None) -> bytes:
    """``payload`` framed as one gRPC message (the flag byte and length overridable)."""
    declared = len(payload) if length is None else length
    return bytes([flag]) + declared.to_bytes(4, "big") + payload


def messages(body: bytes) -> list[bytes]:
    """The gRPC messages in a request body; asserts it holds whole messages only."""
    found = []
    position = 0
    while position < len(body):
        assert body[position] == 0, "the client sent a compressed message"
        length = int.from_bytes(body[position + 1 : position + 5], "big")
        found.append(body[position + 5 : position + 5 + length])
        position += 5 + length
    assert position == len(body), "the request ends inside a message"
    return found


class StreamGone(Exception):
    """The client reset the stream, or the connection is gone: a handler just stops."""


class Request:
    """One request as the server saw it, and the means to answer it."""

    def __init__(self, connection: ServerConnection, stream_id: int, headers: list[Header]):
        self.connection = connection
        self.stream_id = stream_id
        self.headers = dict(headers)
        self.body = bytearray()
        self.data_frames = 0
        self.largest_frame = 0
        self.complete = False
        #: The error code of the client's RST_STREAM, once it came.
        self.reset_code: int | None = None

    @property
    def message(self) -> bytes:
        (only,) = messages(bytes(self.body))
        return only

    @property
    def h2(self) -> h2.connection.H2Connection:
        return self.connection.h2

    def _guard(self) -> contextlib.AbstractContextManager[None]:
        return self.connection.guard()

    async def respond(
        self, headers: Iterable[Any] = GRPC_HEADERS, end_stream: bool = False
    ) -> None:
        with self._guard():
            self.h2.send_headers(self.stream_id, list(headers), end_stream=end_stream)
        await self.connection.flush()

    async def send(self, data: bytes, end_stream: bool = False) -> None:
        """Send ``data`` in as many DATA frames as the client's windows and frame size ask."""
        view = memoryview(data)
        while True:
            with self._guard():
                room = min(
                    self.h2.local_flow_control_window(self.stream_id),
                    self.h2.max_outbound_frame_size,
                )
            if room <= 0 and len(view):
                await self.connection.server.wait_for(self._window_open)
                continue
            chunk, view = view[:room], view[room:]
            with self._guard():
                self.h2.send_data(
                    self.stream_id, chunk.tobytes(), end_stream=end_stream and not len(view)
                )
            await self.connection.flush()
            if not len(view):
                return

    def _window_open(self) -> bool:
        if self.reset_code is not None or self.connection.closed:
            return True  # the next send says why it cannot go on
        return self.h2.local_flow_control_window(self.stream_id) > 0

    async def send_frame(self, data: bytes, *, pad_length: int, end_stream: bool = False) -> None:
        """One padded DATA frame, through h2 so that its windows stay right."""
        with self._guard():
            self.h2.send_data(self.stream_id, data, end_stream=end_stream, pad_length=pad_length)
        await self.connection.flush()

    async def send_messages(self, *payloads: bytes) -> None:
        for payload in payloads:
            await self.send(grpc(payload))

    async def finish(
        self, status: int | None = 0, message: str | None = None, extra: Sequence[Header] = ()
    ) -> None:
        """Trailers: ``grpc-status`` (none if None), ``grpc-message``, and ``extra``."""
        trailers: list[Header] = []
        if status is not None:
            trailers.append(("grpc-status", str(status)))
        if message is not None:
            trailers.append(("grpc-message", message))
        trailers.extend(extra)
        await self.respond(trailers, end_stream=True)

    async def reply(self, *payloads: bytes) -> None:
        """The usual answer: headers, the messages, status OK."""
        await self.respond()
        await self.send_messages(*payloads)
        await self.finish()

    async def reset(self, code: int) -> None:
        with self._guard():
            self.h2.reset_stream(self.stream_id, code)
        await self.connection.flush()

    async def wait_reset(self) -> int:
        """Wait for the client's RST_STREAM on this stream; its error code."""
        await self.connection.server.wait_for(lambda: self.reset_code is not None)
        assert self.reset_code is not None
        return self.reset_code


class ServerConnection:
    """One accepted connection: its h2 state machine and what it has seen."""

    def __init__(self, server: ScriptedServer, stream: anyio.abc.SocketStream, index: int):
        self.server = server
        self.stream = stream
        self.index = index
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        settings = {
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65_536,
            **server.settings,
        }
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values=settings)
        # h2 read these from its defaults when it was made.
        self.h2.max_inbound_frame_size = self.h2.local_settings.max_frame_size
        table = settings.get(h2.settings.SettingCodes.HEADER_TABLE_SIZE)
        if table is not None:
            # Held to the size we announce from the first block on, not only
            # after an update is acknowledged: a client may not rely on more.
            self.h2.decoder.max_allowed_table_size = table
        self.requests: dict[int, Request] = {}
        self.window_updates: dict[int, int] = {}
        self.ping_acks: list[bytes] = []
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.protocol_errors: list[Exception] = []
        self.most_open = 0
        self.closed = False
        self._lock = anyio.Lock()
        self._scope = anyio.CancelScope()

    @contextlib.contextmanager
    def guard(self) -> Any:
        if self.closed:
            raise StreamGone("the connection is closed")
        try:
            yield
        except h2.exceptions.StreamClosedError as exc:
            raise StreamGone(f"stream {exc.stream_id} is closed") from None
        except h2.exceptions.ProtocolError:
            if self.h2.state_machine.state is h2.connection.ConnectionState.CLOSED:
                # The client sent GOAWAY: h2 will send nothing more.
                raise StreamGone("the connection is closed") from None
            raise

    async def flush(self) -> None:
        async with self._lock:
            data = self.h2.data_to_send()
            if data:
                await self._send(data)

    async def send_raw(self, build: Callable[[], bytes | Sequence[Frame]]) -> None:
        """Send what ``build()`` gives, after everything h2 has queued.

        ``build`` runs under the send lock, so a header block it encodes with
        h2's encoder reaches the client in the order it was encoded.
        """
        async with self._lock:
            queued = self.h2.data_to_send()
            built = build()
            raw = built if isinstance(built, bytes) else b"".join(f.serialize() for f in built)
            await self._send(queued + raw)

    async def _send(self, data: bytes) -> None:
        try:
            await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.closed = True
            raise StreamGone("the connection is closed") from None

    async def ping(self, payload: bytes) -> None:
        self.h2.ping(payload)
        await self.flush()

    def drop(self) -> None:
        """Close the socket at once, whatever is in flight."""
        self._scope.cancel()

    async def run(self) -> None:
        try:
            with self._scope:
                if self.server.hold_settings is not None:
                    await self.server.hold_settings.wait()
                self.h2.initiate_connection()
                await self.flush()
                async with anyio.create_task_group() as handlers:
                    await self._read(handlers)
                    handlers.cancel_scope.cancel()
        finally:
            self.closed = True
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()
            self.server.notify()

    async def _read(self, handlers: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                data = await self.stream.receive(1 << 16)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                # h2 has queued its GOAWAY; the test sees the error recorded.
                self.protocol_errors.append(exc)
                with contextlib.suppress(StreamGone):
                    await self.flush()
                return
            for event in events:
                self._on_event(event, handlers)
            with contextlib.suppress(StreamGone):
                await self.flush()
            self.server.notify()

    def _on_event(self, event: h2.events.Event, handlers: anyio.abc.TaskGroup) -> None:
        if isinstance(event, h2.events.RequestReceived):
            assert event.stream_id is not None and event.headers is not None
            request = Request(self, event.stream_id, list(event.headers))  # type: ignore[arg-type]
            self.requests[event.stream_id] = request
            self.server.opened.append(request)
            self.most_open = max(self.most_open, self.h2.open_inbound_streams)
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None and event.data is not None
            request = self.requests[event.stream_id]
            request.body += event.data
            request.data_frames += 1
            request.largest_frame = max(request.largest_frame, event.flow_controlled_length or 0)
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.h2.acknowledge_received_data(
                    event.flow_controlled_length or 0, event.stream_id
                )
        elif isinstance(event, h2.events.StreamEnded):
            assert event.stream_id is not None
            request = self.requests[event.stream_id]
            request.complete = True
            self.server.requests.append(request)
            handlers.start_soon(self._handle, request)
        elif isinstance(event, h2.events.StreamReset):
            assert event.stream_id is not None
            request = self.requests[event.stream_id]
            request.reset_code = int(event.error_code or 0)
        elif isinstance(event, h2.events.WindowUpdated):
            stream_id = event.stream_id or 0
            self.window_updates[stream_id] = self.window_updates.get(stream_id, 0) + 1
        elif isinstance(event, h2.events.PingAckReceived):
            assert event.ping_data is not None
            self.ping_acks.append(event.ping_data)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminated = event

    async def _handle(self, request: Request) -> None:
        with contextlib.suppress(StreamGone):
            await self.server.handler(request)


Handler = Callable[[Request], Awaitable[None]]
RawHandler = Callable[[anyio.abc.SocketStream], Awaitable[None]]


class ScriptedServer:
    """An HTTP/2 server on 127.0.0.1 answering each request with ``handler``.

    ``settings`` go into the server's first SETTINGS frame. With
    ``hold_settings``, no connection says anything before that event is set.
    ``raw`` replaces HTTP/2 altogether: it gets each accepted socket.
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        settings: dict[int, int] | None = None,
        hold_settings: anyio.Event | None = None,
        raw: RawHandler | None = None,
    ) -> None:
        self.handler = handler or _unexpected
        self.settings = dict(settings or {})
        self.hold_settings = hold_settings
        self.raw = raw
        self.port = 0
        self.connections: list[ServerConnection] = []
        self.accepted = 0
        #: Requests whose headers came, and requests wholly received.
        self.opened: list[Request] = []
        self.requests: list[Request] = []
        self._changed = anyio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def protocol_errors(self) -> list[Exception]:
        return [error for c in self.connections for error in c.protocol_errors]

    def notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is tried again whenever the server took in frames.

        Unbounded: the caller bounds it (tests run under ``anyio.fail_after``).
        """
        while not predicate():
            await self._changed.wait()

    async def _accept(self, stream: anyio.abc.SocketStream) -> None:
        self.accepted += 1
        self.notify()
        if self.raw is not None:
            try:
                await self.raw(stream)
            finally:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()
            return
        connection = ServerConnection(self, stream, len(self.connections))
        self.connections.append(connection)
        await connection.run()


async def _unexpected(request: Request) -> None:
    raise AssertionError(f"no request was expected, got {request.headers.get(':path')}")


@contextlib.asynccontextmanager
async def scripted(handler: Handler | None = None, **options: Any) -> AsyncIterator[ScriptedServer]:
    """Run a :class:`ScriptedServer` for the ``async with``; leaving closes every connection."""
    server = ScriptedServer(handler, **options)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server._accept)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()
