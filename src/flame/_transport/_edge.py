"""What a server checks at the edge of each connection, before grpclib sees a byte.

A server (:func:`~._server.serve`) has one :class:`ServerEdge`: its limits,
the token its clients must present, and the connections it holds. Each
connection has a :class:`Gate`, which h2's events pass through on their way
to grpclib:

* **The token.** With a token set, a call whose ``authorization`` header is
  not ``Bearer <token>`` (compared in constant time) is answered
  UNAUTHENTICATED at once; grpclib never sees it, and its data is dropped.
* **The message size.** The gate follows each stream's gRPC messages by
  their 5-byte prefixes. A message longer than ``max_message_bytes`` and
  its envelope (:func:`~._limits.request_limit`) is refused from its prefix
  alone: the call ends with RESOURCE_EXHAUSTED, what came of it is dropped
  and its window given back, so the server holds at most a frame of it;
  HTTP/2's flow control stops the sender in the meantime.
* **Idle connections.** A connection with no call in flight for
  ``idle_timeout`` seconds is told to go away (GOAWAY) and closed.
* **How many.** At the cap, a new connection takes the place of the one idle
  longest, which is told to go away; if every connection has calls in
  flight, the new one is told to go away and closed, and that is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from typing import Any

import grpclib.exceptions
import grpclib.metadata
import h2.errors
import h2.events
import h2.exceptions
from grpclib.const import Status

from ._limits import ServerLimits, request_limit

__all__ = ["Gate", "ServerEdge"]

log = logging.getLogger("flame.transport.server")

#: How often at most the refusals of connections at the cap are logged.
_LOG_EVERY = 10.0

#: Seconds a connection told to go away is kept for its client to close it.
_LINGER = 1.0


class ServerEdge:
    """The limits, the token and the connections of one server."""

    def __init__(self, limits: ServerLimits, auth_token: str | None, max_connections: int) -> None:
        self.limits = limits
        #: The largest request message read.
        self.max_request_bytes = request_limit(limits.max_message_bytes)
        #: The ``authorization`` header a call must carry, or None.
        self.authorization = None if auth_token is None else f"Bearer {auth_token}".encode()
        self.max_connections = max_connections
        #: Open connections, oldest first.
        self.gates: dict[Gate, None] = {}
        self._refused = 0
        self._logged_at = 0.0

    def admit(self, gate: Gate) -> bool:
        """Take ``gate``'s connection in, making room at the cap; False if there is none."""
        if len(self.gates) >= self.max_connections:
            idle = [g for g in self.gates if g.idle]
            if not idle:
                self._refused += 1
                now = time.monotonic()
                if now - self._logged_at >= _LOG_EVERY:
                    log.warning(
                        "refused %d connection(s): this server holds its maximum of %d, "
                        "each with calls in flight",
                        self._refused,
                        self.max_connections,
                    )
                    self._logged_at = now
                    self._refused = 0
                return False
            oldest = min(idle, key=lambda g: g.last_active)
            log.info(
                "at the maximum of %d connections: closing the one idle longest", len(self.gates)
            )
            oldest.go_away("the server is at its maximum of connections, and this one was idle")
        self.gates[gate] = None
        return True

    def forget(self, gate: Gate) -> None:
        self.gates.pop(gate, None)

    def close_all(self, reason: str) -> None:
        """Tell every open connection to go away, and close it (the server is stopping)."""
        for gate in list(self.gates):
            gate.go_away(reason)


class Gate:
    """The edge of one server connection: what of h2's events grpclib may see.

    :meth:`admit` is called with each event h2 gives, in order; an event it
    answers False to is dropped (after the gate has answered for it).
    """

    def __init__(
        self,
        edge: ServerEdge,
        h2_connection: Any,
        connection: Any,
        processor: Any,
        transport: Any = None,
    ) -> None:
        self._edge = edge
        self._transport = transport  # to end our side once told to go away
        self._h2 = h2_connection
        self._connection = connection  # grpclib's, which writes what h2 has to send
        self._processor = processor  # grpclib's, which knows the streams in flight
        self._limit = edge.max_request_bytes
        self._authorization = edge.authorization
        self._loop = asyncio.get_running_loop()
        #: Streams inside a message: (bytes of it still to come, its prefix so far).
        self._messages: dict[int, tuple[int, bytes]] = {}
        #: Streams refused: whatever more comes for them is dropped.
        self._refused: set[int] = set()
        self.last_active = self._loop.time()
        self._closing = False
        self._idle_timer: asyncio.TimerHandle | None = None
        if not edge.admit(self):
            self.go_away(
                f"the server holds its maximum of {edge.max_connections} connections; "
                "try again later"
            )
            return
        idle = edge.limits.idle_timeout
        if idle is not None:
            self._idle_timer = self._loop.call_later(idle / 4, self._look_idle, idle)

    # -- the events -----------------------------------------------------------

    def admit(self, event: Any) -> bool:
        kind = event.__class__
        if kind is h2.events.DataReceived:
            return self._admit_data(event)
        if kind is h2.events.RequestReceived:
            if self._closing:
                # After our GOAWAY: not processed, and the client knows to
                # make it again elsewhere.
                self._refuse(event.stream_id)
                self._reset(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                return False
            self.last_active = self._loop.time()
            if self._authorization is not None and not self._authorized(event):
                return False
        elif kind is h2.events.StreamEnded:
            self._messages.pop(event.stream_id, None)
            # A refused request's handler must not see it end: it would read
            # no message instead of waiting to be refused.
            return event.stream_id not in self._refused
        elif kind is h2.events.StreamReset:
            self._messages.pop(event.stream_id, None)
            self._refused.discard(event.stream_id)
        return True

    def _authorized(self, event: Any) -> bool:
        expected = self._authorization
        assert expected is not None
        given = None
        for name, value in event.headers:
            if name == "authorization":
                given = value.encode("utf-8", "replace")
                break
        if given is not None and hmac.compare_digest(given, expected):
            return True
        said = (
            "the call carried no token"
            if given is None
            else "the token the call carried is not this server's"
        )
        self._answer(
            event.stream_id,
            Status.UNAUTHENTICATED,
            f"this server requires a token: {said}; give the server's auth_token to "
            "flame.connect(auth_token=...), or set FLAME_AUTH_TOKEN",
        )
        return False

    def _admit_data(self, event: Any) -> bool:
        stream_id = event.stream_id
        if stream_id in self._refused:
            self._give_back(event)
            return False
        data = event.data
        size = len(data)
        if stream_id not in self._messages and size >= 5:
            # The usual frame: one whole message, within the limit.
            length = int.from_bytes(data[1:5], "big")
            if length + 5 == size and length <= self._limit:
                return True
        oversized = self._scan(stream_id, data)
        if oversized is None:
            return True
        self._refuse_message(stream_id, oversized)
        self._give_back(event)
        return False

    def _scan(self, stream_id: int, data: bytes) -> int | None:
        """Follow the messages of a stream through ``data``: an oversized length, or None."""
        remaining, prefix = self._messages.pop(stream_id, (0, b""))
        position, size, limit = 0, len(data), self._limit
        while position < size:
            if remaining:
                step = min(remaining, size - position)
                remaining -= step
                position += step
                continue
            missing = 5 - len(prefix)
            prefix += data[position : position + missing]
            position += missing
            if len(prefix) < 5:
                break
            length = int.from_bytes(prefix[1:5], "big")
            prefix = b""
            if length > limit:
                return length
            remaining = length
        if remaining or prefix:
            self._messages[stream_id] = (remaining, prefix)
        return None

    def _reset(self, stream_id: int, code: h2.errors.ErrorCodes) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.reset_stream(stream_id, code)
        self._connection.flush()

    def _give_back(self, event: Any) -> None:
        """Return the window a dropped frame took, so other calls keep flowing."""
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)

    # -- refusing -------------------------------------------------------------

    def _refuse(self, stream_id: int) -> None:
        refused = self._refused
        if len(refused) >= 64:
            # Streams over on both sides take no more frames: forget them.
            streams = self._h2.streams
            self._refused = refused = {s for s in refused if s in streams}
        refused.add(stream_id)

    def _refuse_message(self, stream_id: int, length: int) -> None:
        self._refuse(stream_id)
        message = (
            f"the request message is {length:,} bytes, over the {self._limit:,} this server "
            f"reads ({self._edge.limits.max_message_bytes:,} bytes of data, max_message_bytes, "
            "and 64 KiB around it); it was not read"
        )
        log.warning("refused a request: %s", message)
        # The handler has the call, or is about to: it is made to answer
        # with the refusal once it waits for the message (grpclib's own way
        # to end a handler with a status). It runs before this callback.
        self._loop.call_soon(self._end_handler, stream_id, message)

    def _end_handler(self, stream_id: int, message: str) -> None:
        stream = self._processor.streams.get(stream_id)
        wrapper = None if stream is None else stream.wrapper
        error = grpclib.exceptions.GRPCError(Status.RESOURCE_EXHAUSTED, message)
        if wrapper is not None:
            wrapper.cancel(error)
        else:
            self._answer(stream_id, Status.RESOURCE_EXHAUSTED, message)

    def _answer(self, stream_id: int, status: Status, message: str) -> None:
        """End a call grpclib will not answer: its status alone, then a reset to stop the sender."""
        self._refuse(stream_id)
        h2_connection = self._h2
        try:
            h2_connection.send_headers(
                stream_id,
                [
                    (":status", "200"),
                    ("content-type", "application/grpc+proto"),
                    ("grpc-status", str(status.value)),
                    ("grpc-message", grpclib.metadata.encode_grpc_message(message)),
                ],
                end_stream=True,
            )
            h2_connection.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)
        except h2.exceptions.ProtocolError:
            pass  # the client is done with the stream already
        self._connection.flush()

    # -- idle, and going away -------------------------------------------------------

    @property
    def idle(self) -> bool:
        """No call in flight."""
        return not self._processor.streams

    def _look_idle(self, timeout: float) -> None:
        self._idle_timer = None
        if self._closing:
            return
        now = self._loop.time()
        if not self.idle:
            self.last_active = now
        elif now - self.last_active >= timeout:
            self.go_away(f"the connection was idle for {timeout:g} s")
            return
        self._idle_timer = self._loop.call_later(timeout / 4, self._look_idle, timeout)

    def go_away(self, reason: str) -> None:
        """Tell the client to go away (GOAWAY: calls it made are done) and close."""
        if self._closing:
            return
        self._closing = True
        self._edge.forget(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        try:
            self._h2.close_connection(
                error_code=h2.errors.ErrorCodes.NO_ERROR, additional_data=reason.encode()[:200]
            )
            self._connection.flush()
        except h2.exceptions.ProtocolError:
            pass
        # Closed at once, with what the client sent unread, the socket would
        # be reset, and the client might lose the GOAWAY saying why. So our
        # side ends, the client closes its own (ours does, on a GOAWAY), and
        # the connection is closed after a moment anyway.
        transport = self._transport
        if transport is not None and transport.can_write_eof():
            # The client may have gone already (ENOTCONN): nothing left to tell it.
            with contextlib.suppress(OSError):
                transport.write_eof()
        self._loop.call_later(_LINGER, self._connection.close)

    def closed(self) -> None:
        """The connection is gone."""
        self._closing = True
        self._edge.forget(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
