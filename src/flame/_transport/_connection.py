"""One HTTP/2 connection carrying a client's gRPC calls: the protocol, not the I/O.

:class:`Connection` holds what HTTP/2 asks a client to keep: the streams in
flight (each a :class:`~._stream.Call`), both directions of flow control, the
server's settings, GOAWAY, and the HPACK state. It never touches a socket: a
driver (:mod:`._asyncio`, :mod:`._trio`) feeds it the bytes that arrive
(:meth:`Connection.data_received`), tells it when the socket is gone
(:meth:`Connection.connection_lost`), and gives it four things: a way to
write (``_write``, which never waits), a way to close, and a waiter a caller
parks on until the protocol wakes it (``waiter``, ``park``).

It carries only what a client's unary and server-streaming calls need:
requests are one header block (made once per path, see
:func:`~._frames.request_headers`) and one message; replies are parsed in
place, each message going straight to the one call waiting for it.
"""

from __future__ import annotations

import abc
import collections
import logging
import struct
from collections.abc import Sequence
from typing import Any

import hpack

from ._frames import (
    ACK,
    CANCEL,
    COMPRESSION_ERROR,
    CONNECTION_WINDOW,
    CONTINUATION,
    CREDIT_STEP,
    DATA,
    DEFAULT_FRAME_SIZE,
    DEFAULT_WINDOW,
    END_HEADERS,
    END_STREAM,
    ERROR_NAMES,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    MAX_STREAM_ID,
    MAX_WINDOW,
    PADDED,
    PING,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    REFUSED_STREAM,
    RESET_STATUS,
    RST_STREAM,
    SETTINGS,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    SETTINGS_MAX_FRAME_SIZE,
    WINDOW_UPDATE,
    HeaderDecoder,
    frame,
    frame_header,
    grpc_message,
    request_headers,
    u32,
)
from ._limits import Keepalive
from ._status import CallFailed, ConnectionLost, ProtocolViolation, Status, Unprocessed
from ._stream import Call

__all__ = ["Connection"]

log = logging.getLogger("flame.transport.http2")


class Connection(abc.ABC):
    """One HTTP/2 connection to a gRPC server, as a client keeps it.

    :meth:`open` starts a call; the first waits for the server's SETTINGS,
    and any waits for a free stream when the server's limit is reached.
    A driver subclass does the I/O; see the module's docstring.
    """

    def __init__(
        self,
        *,
        scheme: str,
        authority: str,
        user_agent: str,
        max_message: int,
        headers: Sequence[tuple[str, str]] = (),
        keepalive: Keepalive | None = None,
    ) -> None:
        self.scheme = scheme
        self.authority = authority
        self.user_agent = user_agent
        #: The largest message accepted from the server.
        self.max_message = max_message
        #: Headers of this connection sent with every call (in the cached blocks).
        self.headers = tuple(headers)
        self.keepalive = keepalive
        # Keepalive: reads so far, the count at the last look, since when
        # nothing has come, when the unanswered PING went out.
        self._reads = 0
        self._reads_seen = 0
        self._quiet_since: float | None = None
        self._pinged_at: float | None = None
        self._keepalive_armed = False
        self.streams: dict[int, Call] = {}
        # The server's first SETTINGS has come (or the connection failed first).
        self._settled = False
        self._settled_waiters: list[Any] = []
        self._buffer = bytearray()
        self._blocks: dict[str, bytes] = {}
        self._decoder = HeaderDecoder()
        self._next_stream_id = 1
        self._error: BaseException | None = None
        self._going_away = False
        #: What the server's GOAWAY said: its code, and its reason if any.
        self._goaway = ""
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

    @property
    def max_streams(self) -> int:
        """How many streams the server lets us have open at once."""
        return self._max_streams

    def catch_up(self) -> None:  # noqa: B027 - a driver called as bytes come needs none
        """Take in, without waiting, what the server sent while nobody was reading.

        A driver whose connection is read only by waiting callers does it
        before the connection carries a new call, so that a GOAWAY or a
        closed socket is known first.
        """

    async def ready(self) -> None:
        """Wait for the server's first SETTINGS: it speaks HTTP/2, and its limits are known."""
        if not self._settled:
            waiter = self.waiter()
            self._settled_waiters.append(waiter)
            await self.park(waiter)
        if self._error is not None and not self._going_away:
            # (Told to go away first, a call says so instead: see open.)
            raise self._error

    # -- keepalive ------------------------------------------------------------

    def arm_keepalive(self) -> None:  # noqa: B027 - a driver whose callers look needs none
        """A call opened on a connection nobody watched: look at it again when it is due.

        A driver with timers schedules :meth:`keepalive_check` here; one read
        by its waiting callers asks it before each wait instead.
        """

    def keepalive_check(self, now: float) -> float | None:
        """Look at the connection's silence at ``now``; when to look next, or None.

        While calls are in flight: after ``interval`` seconds with nothing
        from the server (measured between two looks), a PING goes out; if
        nothing comes within ``timeout`` seconds more, the connection is
        given up (its calls fail as lost). None when there is nothing to
        watch: no keepalive, no call in flight, or the connection is shut;
        the next call opened arms it again.
        """
        keepalive = self.keepalive
        if keepalive is None or self._error is not None:
            self._keepalive_armed = False
            return None
        if self._reads != self._reads_seen or self._quiet_since is None:
            self._reads_seen = self._reads
            self._quiet_since = now
            self._pinged_at = None
        if not self.streams:
            self._keepalive_armed = False
            self._quiet_since = None
            return None
        pinged = self._pinged_at
        if pinged is None:
            due = self._quiet_since + keepalive.interval
            if now < due:
                return due
            self._pinged_at = now
            self._write(frame(PING, 0, 0, b"flame-ka"))
            return now + keepalive.timeout
        if now < pinged + keepalive.timeout:
            return pinged + keepalive.timeout
        self._keepalive_armed = False
        message = (
            f"the server sent nothing for {now - self._quiet_since:.3g} s and did not answer "
            f"a keepalive PING within {keepalive.timeout:g} s; the connection was given up"
        )
        log.warning("%s: %s", self.authority, message)
        self._shut(ConnectionLost(message))
        self.abort()
        return None

    # -- what a driver provides ----------------------------------------------

    @abc.abstractmethod
    def waiter(self) -> Any:
        """A new waiter for :meth:`park`: ``done()``, ``cancelled()``, ``set_result(None)``."""

    @abc.abstractmethod
    async def park(self, waiter: Any) -> None:
        """Wait until ``waiter`` is woken by ``set_result``; a cancellation ends the wait."""

    @abc.abstractmethod
    def _write(self, data: bytes) -> None:
        """Send ``data`` after everything written before, without waiting; nothing once closed."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the socket; calls still open fail as the connection is lost."""

    def abort(self) -> None:
        """Close the socket at once, dropping what was not sent (the peer is gone)."""
        self.close()

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """Whether the socket is gone."""

    @abc.abstractmethod
    async def wait_closed(self) -> None:
        """Wait until the socket is gone (a TLS connection may first exchange close_notify)."""

    # -- what a driver calls ---------------------------------------------------

    def connection_lost(self, exc: BaseException | None) -> None:
        reason = f": {exc}" if exc is not None else ""
        self._shut(ConnectionLost(f"the connection was lost{reason}"))

    def data_received(self, data: bytes | bytearray) -> None:
        if self._error is not None:
            return  # shut: what the server still sends changes nothing
        self._reads += 1
        buffer = self._buffer
        buffer += data
        view = memoryview(buffer)
        size = len(buffer)
        position = 0
        try:
            while size - position >= 9:
                high, low, kind, flags, stream_id = frame_header.unpack_from(buffer, position)
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
            # A fault of ours must not escape into the driver: the calls on
            # this connection fail with it.
            log.exception("reading from %s failed", self.authority)
            view.release()
            self._connection_error(PROTOCOL_ERROR, f"{type(exc).__name__}: {exc}")
            return
        view.release()
        del buffer[:position]

    # -- starting calls -----------------------------------------------------

    async def open(self, path: str, payload: bytes, timeout_field: bytes = b"") -> Call:
        """Start a call to ``path`` sending the encoded message ``payload``.

        ``timeout_field`` (see :func:`~._frames.timeout_field`) is appended
        to the path's header block. The whole request is sent (or queued for
        the server's window) with the end of our side of the stream.
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
        if self._going_away or self._next_stream_id > MAX_STREAM_ID:
            # Told to go away (and maybe closed since): the call was not made.
            said = f" ({self._goaway})" if self._goaway else ""
            raise Unprocessed(f"the connection was closing{said}; the call was not made")
        if self._error is not None:
            raise self._error
        block = self._blocks.get(path)
        if block is None:
            block = self._blocks[path] = request_headers(
                self.scheme, self.authority, path, self.user_agent, self.headers
            )
        if timeout_field:
            block += timeout_field
        stream_id = self._next_stream_id
        self._next_stream_id += 2
        call = Call(self, stream_id, self._initial_window)
        self.streams[stream_id] = call
        if not self._keepalive_armed and self.keepalive is not None:
            self._keepalive_armed = True
            self.arm_keepalive()
        message = grpc_message(payload)
        size = len(message)
        if (
            len(block) <= self._max_frame
            and size <= self._max_frame
            and size <= self._send_window
            and size <= call.send_window
        ):
            # Everything fits: headers and data go in one write.
            self._send_window -= size
            call.send_window -= size
            self._write(
                frame(HEADERS, END_HEADERS, stream_id, block)
                + frame(DATA, END_STREAM, stream_id, message)
            )
        else:
            self._write_headers(stream_id, block)
            call.outbound = memoryview(message)
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
        outbound = call.outbound
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
            call.outbound = outbound
            self._blocked[call.stream_id] = call
        else:
            call.outbound = None
            self._blocked.pop(call.stream_id, None)

    def _unblock(self) -> None:
        for call in list(self._blocked.values()):
            if self._send_window <= 0:
                break
            self._send_outbound(call)

    # -- what a call asks of its connection ---------------------------------

    def credit(self, call: Call) -> None:
        """Give the server window again for what the call has received.

        Not while the caller has half a window of messages it has not taken:
        a caller that stops reading a stream stops the server, rather than
        letting messages pile up here. A message being received is not
        counted, so one larger than the window still comes in whole.
        """
        if call.queued < CREDIT_STEP and self.streams.get(call.stream_id) is call:
            self._write(frame(WINDOW_UPDATE, 0, call.stream_id, u32.pack(call.unacked)))
            call.unacked = 0

    def forget(self, call: Call) -> None:
        """The call's stream is over on both sides: free its place."""
        if self.streams.pop(call.stream_id, None) is not None:
            self._blocked.pop(call.stream_id, None)
            self._wake_slot()
            if self._going_away and not self.streams:
                self.close()

    def reset(self, stream_id: int, code: int) -> None:
        self._write(frame(RST_STREAM, 0, stream_id, u32.pack(code)))

    # -- ending the connection ------------------------------------------------

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
            call.fail(error)
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _connection_error(self, code: int, message: str) -> None:
        log.warning("closing the connection to %s: %s", self.authority, message)
        last = self._next_stream_id - 2 if self._next_stream_id > 1 else 0
        self._write(frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + message.encode()[:200]))
        self._shut(ProtocolViolation(message))
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
            self._write(frame(WINDOW_UPDATE, 0, 0, u32.pack(self._unacked)))
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
            call.on_data(payload)
        if flags & END_STREAM:
            if call.error is None and not call.ended:
                call.fail(CallFailed(Status.INTERNAL, "the server ended the call without trailers"))
            self.forget(call)
        elif call.error is not None:
            self.forget(call)
            self.reset(stream_id, CANCEL)
        else:
            call.unacked += size
            if call.unacked >= CREDIT_STEP:
                self.credit(call)

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
        call.on_headers(headers, end_stream)
        if end_stream:
            self.forget(call)
        elif call.error is not None:
            self.forget(call)
            self.reset(stream_id, CANCEL)

    def _on_reset(self, stream_id: int, payload: bytes) -> None:
        call = self.streams.get(stream_id)
        if call is None or len(payload) != 4:
            return
        code = u32.unpack(payload)[0]
        name = ERROR_NAMES.get(code, f"error {code}")
        error: CallFailed
        if code == REFUSED_STREAM:
            # RFC 9113, 8.7: the server did nothing with the stream.
            error = Unprocessed(f"the server refused the call ({name}) before processing it")
        else:
            error = CallFailed(
                RESET_STATUS.get(code, Status.INTERNAL), f"the server reset the call ({name})"
            )
        call.fail(error)
        self.forget(call)

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            self._connection_error(FRAME_SIZE_ERROR, "a WINDOW_UPDATE frame of the wrong size")
            return
        increment = u32.unpack(payload)[0] & MAX_WINDOW
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
                if call.outbound is not None:
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
        self._goaway = detail
        for stream_id in [s for s in self.streams if s > last]:
            # Never seen by the server: safe to make again elsewhere.
            call = self.streams[stream_id]
            call.fail(
                Unprocessed(
                    f"the server is closing the connection ({detail}) and did not take the call"
                )
            )
            self.forget(call)
        if not self.streams:
            self.close()
        for waiter in self._slot_waiters:
            if not waiter.done():
                waiter.set_result(None)
