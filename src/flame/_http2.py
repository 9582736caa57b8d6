"""A lean gRPC client connection over HTTP/2, for the calls made once per task.

Every task costs a client two calls, CreateTask and WatchTask. Through
grpclib each call spends about half a millisecond of CPU in grpclib's stream
machinery and h2's general-purpose HTTP/2 state machine (profile in
``docs/transport.md``), which made our client need about twice the CPU per
task of the grpcio-based reference client. This module carries only what a
client's unary and server-streaming gRPC calls need, and nothing a server or a
general HTTP/2 peer needs:

* request headers are HPACK-encoded once per method path and reused: they use
  no dynamic table (each block starts by setting its size to 0), so a block
  means the same whatever was sent before;
* response headers are decoded by ``hpack``'s decoder, and a block that did not
  change the decoder's table is remembered, so the server's usual replies
  (``:status 200``, ``grpc-status 0``) are decoded once per connection;
* frames are parsed in place from the socket's bytes, and each message goes
  straight to the one call waiting for it.

The protocol is written once (:class:`Connection`) and driven two ways: as an
asyncio protocol on the caller's loop (:class:`AsyncioConnection`), and by
trio itself (:class:`TrioConnection`), so that under trio the calls made per
task cross no thread. :mod:`flame._transport` picks the driver, opens and
closes connections, and translates failures. Failures are raised as grpclib's
exception types (``GRPCError``, ``StreamTerminatedError``, ``ProtocolError``)
so that there is one translation for both paths.

It does flow control both ways, honours the server's settings (concurrent
streams, window and frame sizes), answers pings, follows GOAWAY, and resets a
call's stream the moment the call is abandoned.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
import struct
import urllib.parse
from collections.abc import Callable
from typing import Any, cast

import hpack
from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

log = logging.getLogger("flame.transport.http2")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113, section 6).
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Settings.
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5

# Error codes.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
FLOW_CONTROL_ERROR = 0x3
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9

ERROR_NAMES = {
    0x0: "NO_ERROR",
    0x1: "PROTOCOL_ERROR",
    0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT",
    0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM",
    0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR",
    0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY",
    0xD: "HTTP_1_1_REQUIRED",
}

#: The gRPC status a stream reset by the server stands for (gRPC's
#: "HTTP/2 transport mapping"); anything else is INTERNAL.
RESET_STATUS = {
    REFUSED_STREAM: Status.UNAVAILABLE,
    CANCEL: Status.CANCELLED,
    0xB: Status.RESOURCE_EXHAUSTED,
    0xC: Status.PERMISSION_DENIED,
}

#: The gRPC status of a reply whose HTTP status is not 200 (gRPC's "HTTP to
#: gRPC status code mapping").
HTTP_STATUS = {
    "400": Status.INTERNAL,
    "401": Status.UNAUTHENTICATED,
    "403": Status.PERMISSION_DENIED,
    "404": Status.UNIMPLEMENTED,
    "429": Status.UNAVAILABLE,
    "502": Status.UNAVAILABLE,
    "503": Status.UNAVAILABLE,
    "504": Status.UNAVAILABLE,
}

MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**31 - 1
DEFAULT_WINDOW = 65_535
DEFAULT_FRAME_SIZE = 16_384

#: What we let the server send on one stream, and on the whole connection,
#: before it waits for our WINDOW_UPDATE. Credit goes back in steps of half
#: a window: for the connection as data arrives, for a stream as data
#: arrives unless its caller has a step's worth of messages not taken yet
#: (see Connection._credit), so an unread stream holds its server back.
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 16 << 20
CREDIT_STEP = STREAM_WINDOW // 2

#: Decoded header blocks remembered per connection.
HEADER_CACHE_SIZE = 64

_frame_header = struct.Struct(">BHBBI")  # 24-bit length as a byte and a short
_pack_header = struct.Struct(">HBBBI")  # the same, to write: length high 16, low 8
_window_update = struct.Struct(">I")


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame: its 9-byte header and ``payload``."""
    length = len(payload)
    return _pack_header.pack(length >> 8, length & 0xFF, kind, flags, stream_id) + payload


def request_headers(scheme: str, authority: str, path: str, user_agent: str) -> bytes:
    """The HPACK block of a gRPC request to ``path``, the same on every call.

    It first sets the dynamic table's size to 0 and then adds nothing to it,
    so the block can be sent again and again whatever the server's decoder
    holds, and a server lowering its table size asks nothing of us.
    """
    encoder = hpack.Encoder()
    encoder.header_table_size = 0  # announced at the start of the block
    return encoder.encode(
        [
            (":method", "POST"),
            (":scheme", scheme),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("user-agent", user_agent),
        ],
        # Plain strings: a few bytes more once per call, where a Huffman
        # decode per call costs the server (ours, in Python) several times
        # the time of copying them.
        huffman=False,
    )


def grpc_message(payload: bytes) -> bytes:
    """``payload`` with gRPC's 5-byte prefix: uncompressed, and its length."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


class Unprocessed(GRPCError):
    """UNAVAILABLE for a call the server has said it never processed.

    A stream above a GOAWAY's last stream id, one reset with REFUSED_STREAM,
    or one not started because the connection was closing: making the call
    again, on a connection that works, cannot do anything twice.
    """


class _HeaderDecoder:
    """``hpack``'s decoder, remembering blocks that leave its table unchanged.

    A block decodes to the same headers as long as the dynamic table is the
    same, and the table changes only when a block adds to it or resizes it.
    So a block is remembered if decoding it changed nothing, and everything
    remembered is forgotten when any block changes the table.
    """

    def __init__(self) -> None:
        self._decoder = hpack.Decoder()
        self._cache: dict[bytes, dict[str, str]] = {}

    def decode(self, block: bytes) -> dict[str, str]:
        cached = self._cache.get(block)
        if cached is not None:
            return cached
        table = self._decoder.header_table
        entries = table.dynamic_entries
        newest = entries[0] if entries else None
        count = len(entries)
        # A resize of an empty table changes no entry, yet a block replayed
        # from here would not redo it.
        size = table.maxsize
        headers: dict[str, str] = {}
        decoded = cast("list[tuple[str, str]]", self._decoder.decode(block))
        for name, value in decoded:
            # Repeated names are joined, as HTTP does; gRPC sends none we read.
            if name in headers:
                headers[name] = f"{headers[name]},{value}"
            else:
                headers[name] = value
        if (
            len(entries) == count
            and (entries[0] if entries else None) is newest
            and table.maxsize == size
        ):
            if len(self._cache) >= HEADER_CACHE_SIZE:
                self._cache.clear()
            self._cache[block] = headers
        else:
            self._cache.clear()
        return headers


class Call:
    """One call's stream: the messages the server sent, then how it ended.

    Made by :meth:`Connection.open`. :meth:`receive` gives each message in
    turn, then None when the server ended the call with status OK, or
    raises the error it ended with. :meth:`close` ends the stream on our
    side; a call closed before the server has finished is reset (CANCEL).
    """

    __slots__ = (
        "_connection",
        "_ended",
        "_error",
        "_headers_seen",
        "_messages",
        "_outbound",
        "_partial",
        "_queued",
        "_unacked",
        "_waiter",
        "send_window",
        "stream_id",
    )

    def __init__(self, connection: Connection, stream_id: int, send_window: int) -> None:
        self._connection = connection
        self.stream_id = stream_id
        self.send_window = send_window
        self._messages: collections.deque[bytes] = collections.deque()
        self._waiter: Any = None
        self._error: BaseException | None = None
        self._ended = False
        self._headers_seen = False
        # The start of a message whose end has not come yet.
        self._partial: bytearray | None = None
        # Bytes of whole messages not taken yet, and bytes received that the
        # server has not been given window for again.
        self._queued = 0
        self._unacked = 0
        # The part of the request not sent yet, held back by flow control.
        self._outbound: memoryview | None = None

    async def receive(self) -> bytes | None:
        """The next message; None once the call has ended with OK."""
        while True:
            if self._messages:
                message = self._messages.popleft()
                self._queued -= len(message)
                if self._unacked >= CREDIT_STEP:
                    self._connection._credit(self)
                return message
            if self._error is not None:
                raise self._error
            if self._ended:
                return None
            connection = self._connection
            waiter = self._waiter = connection.waiter()
            try:
                await connection.park(waiter)
            finally:
                self._waiter = None

    def close(self) -> None:
        """End the stream on our side: reset it if the server has not ended it."""
        connection = self._connection
        if connection.streams.get(self.stream_id) is self:
            connection.forget(self)
            connection.reset(self.stream_id, CANCEL)
        self._outbound = None

    # Called by the connection as frames arrive.

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is None and not self._ended:
            self._error = error
        self._outbound = None
        self._wake()

    def _on_headers(self, headers: dict[str, str], end_stream: bool) -> None:
        if not self._headers_seen:
            self._headers_seen = True
            http_status = headers.get(":status")
            if http_status != "200":
                self._fail(
                    GRPCError(
                        HTTP_STATUS.get(http_status or "", Status.UNKNOWN),
                        f"the server answered with HTTP status {http_status}, not 200",
                    )
                )
                return
            if not end_stream:
                content_type = headers.get("content-type", "")
                if not content_type.startswith("application/grpc"):
                    self._fail(
                        GRPCError(
                            Status.UNKNOWN,
                            f"the server answered with content-type {content_type!r}, "
                            "not a gRPC one; is this a gRPC endpoint?",
                        )
                    )
                return
        elif not end_stream:
            self._fail(ProtocolError("the server sent a second header block mid-stream"))
            return
        # Trailers, or a reply of trailers only.
        if self._partial:
            self._fail(ProtocolError("the server ended the call inside a message"))
            return
        number = headers.get("grpc-status")
        if number is None:
            self._fail(GRPCError(Status.UNKNOWN, "the server ended the call without a status"))
            return
        try:
            status = Status(int(number))
        except ValueError:
            status = Status.UNKNOWN
        if status is Status.OK:
            self._ended = True
            self._wake()
        else:
            message = headers.get("grpc-message")
            self._fail(GRPCError(status, urllib.parse.unquote(message) if message else None))

    def _on_data(self, data: bytes) -> None:
        if not self._headers_seen:
            self._fail(ProtocolError("the server sent data before its headers"))
            return
        if self._error is not None:
            return
        partial = self._partial
        if partial is not None:
            # Appended to, not rebuilt: a large message comes in many frames.
            partial += data
            buffered: bytes | bytearray = partial
        else:
            buffered = data
        position = 0
        size = len(buffered)
        limit = self._connection.max_message
        while size - position >= 5:
            if buffered[position]:
                self._fail(
                    GRPCError(
                        Status.INTERNAL,
                        "the server sent a compressed message; this client asks for none",
                    )
                )
                return
            length = int.from_bytes(buffered[position + 1 : position + 5], "big")
            if length > limit:
                self._fail(
                    GRPCError(
                        Status.RESOURCE_EXHAUSTED,
                        f"the server sent a message of {length:,} bytes, over the "
                        f"{limit:,} this client accepts",
                    )
                )
                return
            end = position + 5 + length
            if end > size:
                break
            message = bytes(buffered[position + 5 : end])
            self._messages.append(message)
            self._queued += length
            position = end
        if position == size:
            self._partial = None
        elif partial is None:
            self._partial = bytearray(buffered[position:])
        elif position:
            del partial[:position]
        self._wake()


class Connection(abc.ABC):
    """One HTTP/2 connection carrying this client's calls: the protocol, not the I/O.

    :meth:`open` starts a call; the first waits for the server's SETTINGS,
    and any waits for a free stream when the server's limit is reached.
    The socket is driven by a subclass: :class:`AsyncioConnection` is an
    asyncio protocol, :class:`TrioConnection` runs in trio itself. Each
    gives :meth:`waiter`, :meth:`park`, :meth:`_write` and :meth:`close`;
    a waiter has ``done()``, ``cancelled()`` and ``set_result(None)``.
    """

    def __init__(
        self,
        *,
        scheme: str,
        authority: str,
        user_agent: str,
        max_message: int,
    ) -> None:
        self.scheme = scheme
        self.authority = authority
        self.user_agent = user_agent
        self.max_message = max_message
        self.streams: dict[int, Call] = {}
        self.lost = self._event()
        # The server's first SETTINGS has come (or the connection failed first).
        self._settled = False
        self._settled_waiters: list[Any] = []
        self._buffer = bytearray()
        self._blocks: dict[str, bytes] = {}
        self._decoder = _HeaderDecoder()
        self._next_stream_id = 1
        self._error: BaseException | None = None
        self._going_away = False
        # A header block spread over CONTINUATION frames: stream, bytes, end.
        self._continued: tuple[int, bytearray, bool] | None = None
        # The server's settings, as far as we send by them.
        self._max_streams = 2**31
        self._initial_window = DEFAULT_WINDOW
        self._max_frame = DEFAULT_FRAME_SIZE
        self._send_window = DEFAULT_WINDOW
        # Calls waiting for a stream, and calls whose request waits for window.
        self._slot_waiters: collections.deque[Any] = collections.deque()
        self._blocked: dict[int, Call] = {}
        self._unacked = 0

    # -- state ------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Whether new calls may start here (not lost, not told to go away)."""
        return self._error is None and not self._going_away

    async def ready(self) -> None:
        """Wait for the server's first SETTINGS: it speaks HTTP/2, and its limits are known."""
        if not self._settled:
            waiter = self.waiter()
            self._settled_waiters.append(waiter)
            await self.park(waiter)
        if self._error is not None:
            raise self._error

    # -- what a driver provides ----------------------------------------------

    @abc.abstractmethod
    def _event(self) -> Any:
        """A new event of the driver's backend: ``set()``, ``is_set()``, ``await wait()``."""

    @abc.abstractmethod
    def waiter(self) -> Any:
        """A new waiter for :meth:`park`: ``done()``, ``cancelled()``, ``set_result(None)``."""

    @abc.abstractmethod
    async def park(self, waiter: Any) -> None:
        """Wait until ``waiter`` is woken by ``set_result``; a cancellation ends the wait."""

    @abc.abstractmethod
    def _write(self, data: bytes) -> None:
        """Send ``data`` after everything written before; nothing once closing."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the socket; calls still open fail as the connection is lost."""

    # -- what a driver calls ---------------------------------------------------

    def _preface(self) -> bytes:
        """What we send first: the preface, our settings, and a larger window."""
        settings = struct.pack(
            ">HIHI",
            SETTINGS_ENABLE_PUSH,
            0,
            SETTINGS_INITIAL_WINDOW_SIZE,
            STREAM_WINDOW,
        )
        return (
            PREFACE
            + frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, _window_update.pack(CONNECTION_WINDOW - DEFAULT_WINDOW))
        )

    def connection_lost(self, exc: BaseException | None) -> None:
        reason = f": {exc}" if exc is not None else ""
        self._shut(StreamTerminatedError(f"Connection lost{reason}"))
        self.lost.set()

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return  # shut: what the server still sends changes nothing
        buffer = self._buffer
        buffer += data
        view = memoryview(buffer)
        size = len(buffer)
        position = 0
        try:
            while size - position >= 9:
                high, low, kind, flags, stream_id = _frame_header.unpack_from(buffer, position)
                length = (high << 16) | low
                if kind != SETTINGS and not self._settled:
                    # A server's first frame is its SETTINGS (RFC 9113, 3.4).
                    view.release()
                    self._connection_error(
                        PROTOCOL_ERROR,
                        "the endpoint does not answer in HTTP/2; is it a gRPC (Flame) endpoint?",
                    )
                    return
                end = position + 9 + length
                if end > size:
                    break
                payload = bytes(view[position + 9 : end])
                position = end
                self._on_frame(kind, flags, stream_id & MAX_STREAM_ID, payload)
                if self._error is not None:
                    break
        except (hpack.HPACKError, ValueError, struct.error) as exc:
            view.release()
            self._connection_error(COMPRESSION_ERROR, f"unreadable headers from the server: {exc}")
            return
        except Exception as exc:
            # A fault of ours must not stay inside asyncio's protocol
            # machinery: the calls on this connection fail with it.
            log.exception("reading from %s failed", self.authority)
            view.release()
            self._connection_error(PROTOCOL_ERROR, f"{type(exc).__name__}: {exc}")
            return
        view.release()
        del buffer[:position]

    # -- starting calls -----------------------------------------------------

    async def open(self, path: str, payload: bytes) -> Call:
        """Start a call to ``path`` sending the encoded message ``payload``.

        The whole request is sent (or queued for the server's window) with
        the end of our side of the stream.
        """
        if not self._settled:
            # The first calls wait for the server's settings, its stream limit
            # among them: only then can each tell whether there is room.
            await self.ready()
        while len(self.streams) >= self._max_streams and self.usable:
            waiter = self.waiter()
            self._slot_waiters.append(waiter)
            try:
                await self.park(waiter)
            except BaseException:
                # Pass the turn on if we were woken and are leaving anyway.
                if waiter.done() and not waiter.cancelled():
                    self._wake_slot()
                raise
        if self._error is not None:
            raise self._error
        if self._going_away or self._next_stream_id > MAX_STREAM_ID:
            raise Unprocessed(
                Status.UNAVAILABLE, "the connection was closing; the call was not made"
            )
        block = self._blocks.get(path)
        if block is None:
            block = self._blocks[path] = request_headers(
                self.scheme, self.authority, path, self.user_agent
            )
        stream_id = self._next_stream_id
        self._next_stream_id += 2
        call = Call(self, stream_id, self._initial_window)
        self.streams[stream_id] = call
        message = grpc_message(payload)
        if (
            len(block) <= self._max_frame
            and len(message) <= self._max_frame
            and len(message) <= self._send_window
            and len(message) <= call.send_window
        ):
            # Everything fits: headers and data go in one write.
            self._send_window -= len(message)
            call.send_window -= len(message)
            self._write(
                frame(HEADERS, END_HEADERS, stream_id, block)
                + frame(DATA, END_STREAM, stream_id, message)
            )
        else:
            self._write_headers(stream_id, block)
            call._outbound = memoryview(message)
            self._send_outbound(call)
        return call

    def _write_headers(self, stream_id: int, block: bytes) -> None:
        chunk = self._max_frame
        first, rest = block[:chunk], block[chunk:]
        out = [frame(HEADERS, 0 if rest else END_HEADERS, stream_id, first)]
        while rest:
            piece, rest = rest[:chunk], rest[chunk:]
            out.append(frame(CONTINUATION, 0 if rest else END_HEADERS, stream_id, piece))
        self._write(b"".join(out))

    def _send_outbound(self, call: Call) -> None:
        """Send as much of the call's request as the windows allow."""
        outbound = call._outbound
        if outbound is None:
            return
        out = []
        while len(outbound):
            room = min(self._max_frame, self._send_window, call.send_window)
            if room <= 0:
                break
            piece = outbound[:room]
            outbound = outbound[room:]
            self._send_window -= len(piece)
            call.send_window -= len(piece)
            flags = 0 if len(outbound) else END_STREAM
            out.append(frame(DATA, flags, call.stream_id, piece.tobytes()))
        if out:
            self._write(b"".join(out))
        if len(outbound):
            call._outbound = outbound
            self._blocked[call.stream_id] = call
        else:
            call._outbound = None
            self._blocked.pop(call.stream_id, None)

    def _unblock(self) -> None:
        for call in list(self._blocked.values()):
            if self._send_window <= 0:
                break
            self._send_outbound(call)

    # -- ending calls -------------------------------------------------------

    def forget(self, call: Call) -> None:
        """The call's stream is over on both sides: free its place."""
        if self.streams.pop(call.stream_id, None) is not None:
            self._blocked.pop(call.stream_id, None)
            self._wake_slot()
            if self._going_away and not self.streams:
                self.close()

    def reset(self, stream_id: int, code: int) -> None:
        self._write(frame(RST_STREAM, 0, stream_id, _window_update.pack(code)))

    def _wake_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _shut(self, error: BaseException) -> None:
        """The connection can carry nothing more: every open call fails with ``error``."""
        if self._error is None:
            self._error = error
        self._settle()
        streams, self.streams = self.streams, {}
        self._blocked.clear()
        for call in streams.values():
            call._fail(error)
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _connection_error(self, code: int, message: str) -> None:
        log.warning("closing the connection to %s: %s", self.authority, message)
        last = self._next_stream_id - 2 if self._next_stream_id > 1 else 0
        self._write(frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + message.encode()[:200]))
        self._shut(ProtocolError(message))
        self.close()

    def _settle(self) -> None:
        if not self._settled:
            self._settled = True
            waiters, self._settled_waiters = self._settled_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # -- frames -------------------------------------------------------------

    def _on_frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continued is not None and kind != CONTINUATION:
            self._connection_error(PROTOCOL_ERROR, "a header block was left unfinished")
            return
        if kind == DATA:
            self._on_data(flags, stream_id, payload)
        elif kind == HEADERS:
            self._on_headers(flags, stream_id, payload)
        elif kind == CONTINUATION:
            self._on_continuation(flags, stream_id, payload)
        elif kind == RST_STREAM:
            self._on_reset(stream_id, payload)
        elif kind == WINDOW_UPDATE:
            self._on_window_update(stream_id, payload)
        elif kind == SETTINGS:
            if not flags & ACK:
                self._on_settings(payload)
        elif kind == PING:
            if not flags & ACK:
                self._write(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            self._on_goaway(payload)
        elif kind == PUSH_PROMISE:
            self._connection_error(PROTOCOL_ERROR, "the server pushed although we said not to")
        # PRIORITY and unknown frame types are ignored, as HTTP/2 asks.

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        size = len(payload)
        # All of it counts against the windows, padding and late data included.
        self._unacked += size
        if self._unacked >= CONNECTION_WINDOW // 2:
            self._write(frame(WINDOW_UPDATE, 0, 0, _window_update.pack(self._unacked)))
            self._unacked = 0
        if flags & PADDED:
            if not payload or payload[0] >= size:
                self._connection_error(PROTOCOL_ERROR, "a DATA frame's padding is too long")
                return
            payload = payload[1 : size - payload[0]]
        call = self.streams.get(stream_id)
        if call is None:
            return  # a stream we reset, or one already over
        if payload:
            call._on_data(payload)
        if flags & END_STREAM:
            if call._error is None and not call._ended:
                call._fail(GRPCError(Status.INTERNAL, "the server ended the call without trailers"))
            self.forget(call)
        elif call._error is not None:
            self.forget(call)
            self.reset(stream_id, CANCEL)
        else:
            call._unacked += size
            if call._unacked >= CREDIT_STEP:
                self._credit(call)

    def _credit(self, call: Call) -> None:
        """Give the server window again for what the call has received.

        Not while the caller has half a window of messages it has not taken:
        a caller that stops reading a stream stops the server, rather than
        letting messages pile up here. A message being received is not
        counted, so one larger than the window still comes in whole.
        """
        if call._queued < CREDIT_STEP and self.streams.get(call.stream_id) is call:
            self._write(frame(WINDOW_UPDATE, 0, call.stream_id, _window_update.pack(call._unacked)))
            call._unacked = 0

    def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        start, end = 0, len(payload)
        if flags & PADDED:
            start = 1
            end -= payload[0]
        if flags & PRIORITY_FLAG:
            start += 5
        if start > end:
            self._connection_error(PROTOCOL_ERROR, "a HEADERS frame's padding is too long")
            return
        fragment = payload[start:end]
        if flags & END_HEADERS:
            self._on_header_block(stream_id, fragment, bool(flags & END_STREAM))
        else:
            self._continued = (stream_id, bytearray(fragment), bool(flags & END_STREAM))

    def _on_continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        continued = self._continued
        if continued is None or continued[0] != stream_id:
            self._connection_error(PROTOCOL_ERROR, "a CONTINUATION frame out of place")
            return
        continued[1].extend(payload)
        if flags & END_HEADERS:
            self._continued = None
            self._on_header_block(stream_id, bytes(continued[1]), continued[2])

    def _on_header_block(self, stream_id: int, block: bytes, end_stream: bool) -> None:
        # Always decoded, even for a stream we have reset: HPACK's table
        # must see every block the server sends.
        headers = self._decoder.decode(block)
        call = self.streams.get(stream_id)
        if call is None:
            return
        call._on_headers(headers, end_stream)
        if end_stream:
            self.forget(call)
        elif call._error is not None:
            self.forget(call)
            self.reset(stream_id, CANCEL)

    def _on_reset(self, stream_id: int, payload: bytes) -> None:
        call = self.streams.get(stream_id)
        if call is None or len(payload) != 4:
            return
        code = _window_update.unpack(payload)[0]
        name = ERROR_NAMES.get(code, f"error {code}")
        if code == REFUSED_STREAM:
            # RFC 9113, 8.7: the server did nothing with the stream.
            error: GRPCError = Unprocessed(
                Status.UNAVAILABLE, f"the server refused the call ({name}) before processing it"
            )
        else:
            error = GRPCError(
                RESET_STATUS.get(code, Status.INTERNAL), f"the server reset the call ({name})"
            )
        call._fail(error)
        self.forget(call)

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            self._connection_error(FRAME_SIZE_ERROR, "a WINDOW_UPDATE frame of the wrong size")
            return
        increment = _window_update.unpack(payload)[0] & MAX_WINDOW
        if stream_id == 0:
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                self._connection_error(FLOW_CONTROL_ERROR, "the server's window overflowed")
                return
            self._unblock()
        else:
            call = self.streams.get(stream_id)
            if call is not None:
                call.send_window += increment
                if call._outbound is not None:
                    self._send_outbound(call)

    def _on_settings(self, payload: bytes) -> None:
        if len(payload) % 6:
            self._connection_error(FRAME_SIZE_ERROR, "a SETTINGS frame of the wrong size")
            return
        for offset in range(0, len(payload), 6):
            code, value = struct.unpack_from(">HI", payload, offset)
            if code == SETTINGS_MAX_CONCURRENT_STREAMS:
                more = value > self._max_streams
                self._max_streams = value
                if more:
                    for _ in range(min(len(self._slot_waiters), value)):
                        self._wake_slot()
            elif code == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    self._connection_error(FLOW_CONTROL_ERROR, "the server's window is too large")
                    return
                delta = value - self._initial_window
                self._initial_window = value
                for call in self.streams.values():
                    call.send_window += delta
            elif code == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_FRAME_SIZE <= value <= 16_777_215:
                    self._connection_error(PROTOCOL_ERROR, f"a frame size of {value} is invalid")
                    return
                self._max_frame = value
            # The header table size asks nothing of us (see request_headers),
            # and the others concern what we accept, not what we send.
        self._write(frame(SETTINGS, ACK, 0))
        self._settle()
        self._unblock()

    def _on_goaway(self, payload: bytes) -> None:
        if len(payload) < 8:
            return
        last, code = struct.unpack_from(">II", payload)
        last &= MAX_STREAM_ID
        self._going_away = True
        name = ERROR_NAMES.get(code, f"error {code}")
        said = payload[8:].decode("utf-8", "replace")
        detail = f"{name}: {said}" if said else name
        for stream_id in [s for s in self.streams if s > last]:
            # Never seen by the server: safe to make again elsewhere.
            call = self.streams[stream_id]
            call._fail(
                Unprocessed(
                    Status.UNAVAILABLE,
                    f"the server is closing the connection ({detail}) and did not take the call",
                )
            )
            self.forget(call)
        if not self.streams:
            self.close()
        for waiter in self._slot_waiters:
            if not waiter.done():
                waiter.set_result(None)


class AsyncioConnection(Connection, asyncio.Protocol):
    """The connection as an asyncio protocol: asyncio calls it as bytes arrive.

    Made by ``loop.create_connection`` (see :func:`factory`).
    """

    def __init__(self, **kwargs: Any) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        super().__init__(**kwargs)

    def _event(self) -> asyncio.Event:
        return asyncio.Event()

    def waiter(self) -> asyncio.Future[None]:
        return self._loop.create_future()

    async def park(self, waiter: asyncio.Future[None]) -> None:
        await waiter

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._preface())

    def connection_lost(self, exc: BaseException | None) -> None:
        self._transport = None
        super().connection_lost(exc)


def factory(**kwargs: Any) -> Callable[[], AsyncioConnection]:
    """A protocol factory for ``loop.create_connection``."""
    return lambda: AsyncioConnection(**kwargs)


class _TrioWaiter:
    """A trio task parked until woken: the few parts of a Future the protocol uses."""

    __slots__ = ("_state", "_task")

    def __init__(self, task: Any) -> None:
        self._task = task
        self._state = 0  # 0 parked or about to be, 1 woken, 2 cancelled

    def done(self) -> bool:
        return self._state != 0

    def cancelled(self) -> bool:
        return self._state == 2

    def set_result(self, _: None) -> None:
        if self._state == 0:
            self._state = 1
            if self._task is not None:
                import trio

                trio.lowlevel.reschedule(self._task)


class TrioConnection(Connection):
    """The connection run by trio itself: no thread, no asyncio.

    A reader and a writer run as trio system tasks, from :meth:`start`
    until the socket closes; system tasks, because the connection lives as
    long as its channel, which no nursery of the caller's spans. They end
    when :meth:`close` is called, when the server goes, or when trio.run
    ends, and take nothing with them: every failure ends the calls here.
    """

    def __init__(self, stream: Any, **kwargs: Any) -> None:
        import trio

        self._trio = trio
        self._stream = stream
        self._outgoing = bytearray()
        self._writer: _TrioWaiter | None = None
        self._closing = False
        super().__init__(**kwargs)
        self._outgoing += self._preface()

    def start(self) -> None:
        spawn = self._trio.lowlevel.spawn_system_task
        spawn(self._read_loop, name="flame-http2-reader")
        spawn(self._write_loop, name="flame-http2-writer")

    def _event(self) -> Any:
        return self._trio.Event()

    def waiter(self) -> _TrioWaiter:
        return _TrioWaiter(None)

    async def park(self, waiter: _TrioWaiter) -> None:
        lowlevel = self._trio.lowlevel
        if waiter.done():
            await lowlevel.checkpoint()
            return
        waiter._task = lowlevel.current_task()

        def abort(_: Any) -> Any:
            waiter._state = 2
            return lowlevel.Abort.SUCCEEDED

        await lowlevel.wait_task_rescheduled(abort)

    def _write(self, data: bytes) -> None:
        if self._closing:
            return
        self._outgoing += data
        writer = self._writer
        if writer is not None:
            self._writer = None
            writer.set_result(None)

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            writer = self._writer
            if writer is not None:
                self._writer = None
                writer.set_result(None)

    async def _read_loop(self) -> None:
        trio = self._trio
        error: BaseException | None = None
        try:
            while True:
                data = await self._stream.receive_some(1 << 16)
                if not data:
                    break
                self.data_received(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            # Our own close shows up here too; that is no error.
            error = None if self._closing else (exc.__cause__ or exc)
        except Exception as exc:  # a fault of ours: end the calls with it
            log.exception("reading from %s failed", self.authority)
            error = exc
        finally:
            self.close()
            self.connection_lost(error)

    async def _write_loop(self) -> None:
        trio = self._trio
        try:
            while True:
                if self._outgoing:
                    data = bytes(self._outgoing)
                    self._outgoing.clear()
                    await self._stream.send_all(data)
                elif self._closing:
                    break
                else:
                    waiter = self._writer = self.waiter()
                    await self.park(waiter)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the reader sees the same and reports it
        except Exception:
            log.exception("writing to %s failed", self.authority)
        finally:
            self._closing = True
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self._stream)
