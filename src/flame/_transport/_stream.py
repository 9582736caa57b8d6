"""One call's HTTP/2 stream: the messages the server sent, then how the call ended.

A :class:`Call` is made by :meth:`Connection.open <._connection.Connection.open>`
and fed by its connection as frames arrive (``on_headers``, ``on_data``,
``fail``); its caller takes the messages with :meth:`Call.receive`, and ends
the stream on its side with :meth:`Call.close`.
"""

from __future__ import annotations

import collections
import urllib.parse
from typing import TYPE_CHECKING, Any

from ._frames import CANCEL, CREDIT_STEP, HTTP_STATUS
from ._status import CallFailed, ProtocolViolation, Status

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["Call"]


class Call:
    """One call's stream, as the client sees it.

    :meth:`receive` gives each message in turn, then None when the server
    ended the call with status OK, or raises what it ended with.
    :meth:`close` ends the stream on our side: a call closed before the
    server has finished is reset (CANCEL), at once and without awaiting.
    """

    __slots__ = (
        "connection",
        "ended",
        "error",
        "headers_seen",
        "messages",
        "outbound",
        "partial",
        "queued",
        "send_window",
        "stream_id",
        "unacked",
        "waiter",
    )

    def __init__(self, connection: Connection, stream_id: int, send_window: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        #: What the server lets us send on this stream now.
        self.send_window = send_window
        self.messages: collections.deque[bytes] = collections.deque()
        #: The caller parked in receive(), if any.
        self.waiter: Any = None
        self.error: BaseException | None = None
        self.ended = False
        self.headers_seen = False
        #: The start of a message whose end has not come yet.
        self.partial: bytearray | None = None
        #: Bytes of whole messages not taken yet, and bytes received that the
        #: server has not been given window for again.
        self.queued = 0
        self.unacked = 0
        #: The part of the request not sent yet, held back by flow control.
        self.outbound: memoryview | None = None

    async def receive(self) -> bytes | None:
        """The next message; None once the call has ended with OK."""
        while True:
            if self.messages:
                message = self.messages.popleft()
                self.queued -= len(message)
                if self.unacked >= CREDIT_STEP:
                    self.connection.credit(self)
                return message
            if self.error is not None:
                raise self.error
            if self.ended:
                return None
            connection = self.connection
            waiter = self.waiter = connection.waiter()
            try:
                await connection.park(waiter)
            finally:
                self.waiter = None

    def close(self) -> None:
        """End the stream on our side: reset it if the server has not ended it."""
        connection = self.connection
        if connection.streams.get(self.stream_id) is self:
            connection.forget(self)
            connection.reset(self.stream_id, CANCEL)
        self.outbound = None

    # -- what the connection calls as frames arrive --------------------------

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        if self.error is None and not self.ended:
            self.error = error
        self.outbound = None
        self.wake()

    def on_headers(self, headers: dict[str, str], end_stream: bool) -> None:
        if not self.headers_seen:
            self.headers_seen = True
            http_status = headers.get(":status")
            if http_status != "200":
                self.fail(
                    CallFailed(
                        HTTP_STATUS.get(http_status or "", Status.UNKNOWN),
                        f"the server answered with HTTP status {http_status}, not 200",
                    )
                )
                return
            if not end_stream:
                content_type = headers.get("content-type", "")
                if not content_type.startswith("application/grpc"):
                    self.fail(
                        CallFailed(
                            Status.UNKNOWN,
                            f"the server answered with content-type {content_type!r}, "
                            "not a gRPC one; is this a gRPC endpoint?",
                        )
                    )
                return
        elif not end_stream:
            self.fail(ProtocolViolation("the server sent a second header block mid-stream"))
            return
        # Trailers, or a reply of trailers only.
        if self.partial:
            self.fail(ProtocolViolation("the server ended the call inside a message"))
            return
        number = headers.get("grpc-status")
        if number is None:
            self.fail(CallFailed(Status.UNKNOWN, "the server ended the call without a status"))
            return
        try:
            status = Status(int(number))
        except ValueError:
            status = Status.UNKNOWN
        if status is Status.OK:
            self.ended = True
            self.wake()
        else:
            message = headers.get("grpc-message")
            self.fail(CallFailed(status, urllib.parse.unquote(message) if message else None))

    def on_data(self, data: bytes) -> None:
        if not self.headers_seen:
            self.fail(ProtocolViolation("the server sent data before its headers"))
            return
        if self.error is not None:
            return
        partial = self.partial
        if partial is not None:
            # Appended to, not rebuilt: a large message comes in many frames.
            partial += data
            buffered: bytes | bytearray = partial
        else:
            buffered = data
        position = 0
        size = len(buffered)
        limit = self.connection.max_message
        while size - position >= 5:
            if buffered[position]:
                self.fail(
                    CallFailed(
                        Status.INTERNAL,
                        "the server sent a compressed message; this client asks for none",
                    )
                )
                return
            length = int.from_bytes(buffered[position + 1 : position + 5], "big")
            if length > limit:
                self.fail(
                    CallFailed(
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
            self.messages.append(message)
            self.queued += length
            position = end
        if position == size:
            self.partial = None
        elif partial is None:
            self.partial = bytearray(buffered[position:])
        elif position:
            del partial[:position]
        self.wake()
