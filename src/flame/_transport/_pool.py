"""The connections of one channel, and the one rule for time and retries.

A :class:`Pool` keeps one current connection to its endpoint, and the
connections a server has told to go away (GOAWAY) until their last calls
are over. Every call goes through it, and it holds the two rules every call
follows:

* **Deadlines.** A call with a timeout tells the server (a ``grpc-timeout``
  header, see :func:`~._frames.timeout_field`) and enforces it here; a
  stream's timeout bounds the whole stream.
* **Retries.** A call the server never processed (:class:`~._status.Unprocessed`:
  refused with REFUSED_STREAM, above a GOAWAY's last stream, or not started
  on a closing connection) is made again, as :class:`RetryPolicy` says; a
  stream only while none of its messages has been seen. A call refused by a
  connection that still works waits a pause first; one the server did not
  take because its connection is going goes again at once, on a new one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs

from .._errors import FlameError, FlameErrorCode
from ._connection import Connection
from ._frames import timeout_field
from ._status import ConnectionLost, ProtocolViolation, Unprocessed
from ._stream import Call

__all__ = ["Pool", "RetryPolicy", "ServerStream"]

log = logging.getLogger("flame.transport")


@attrs.frozen
class RetryPolicy:
    """How a call the cluster never processed is made again.

    The cluster says so of a call it refused before doing anything with it
    (it sheds load, or it is restarting): making it again cannot do anything
    twice. ``attempts`` counts the first one; before each new attempt on a
    connection that still works, the call waits ``first_pause`` seconds, then
    ``multiplier`` times longer each time. A call the cluster did not take
    because its connection was closing goes again at once, on a new
    connection. ``RetryPolicy(attempts=1)`` makes every call once only.
    """

    attempts: int = 3
    first_pause: float = 0.01
    multiplier: float = 4.0

    def __attrs_post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise _invalid(f"attempts must be an int, not {type(self.attempts).__name__}")
        if self.attempts < 1:
            raise _invalid(f"attempts is {self.attempts}; a call is made at least once (1)")
        for name in ("first_pause", "multiplier"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise _invalid(f"{name} must be a number, not {value!r}")
        if self.first_pause < 0:
            raise _invalid(f"first_pause is {self.first_pause}; give 0 or more seconds")
        if self.multiplier < 1:
            raise _invalid(f"multiplier is {self.multiplier}; give 1 or more")

    def pause(self, attempt: int) -> float:
        """Seconds to wait after attempt number ``attempt`` (from 1) was refused."""
        return float(self.first_pause * self.multiplier ** (attempt - 1))


def _invalid(message: str) -> FlameError:
    return FlameError(FlameErrorCode.INVALID_ARGUMENT, f"RetryPolicy: {message}")


_sleep = anyio.sleep  # the tests watch the pauses here

#: An async context manager that raises TimeoutError when its block has
#: not ended within the delay: each driver gives the cheapest of its backend.
Deadline = Callable[[float], Any]


def _header(until: float | None) -> bytes:
    """The ``grpc-timeout`` of a call that must end by ``until`` (``time.monotonic()``)."""
    if until is None:
        return b""
    return timeout_field(max(0.0, until - time.monotonic()))


class Pool:
    """The connections of one channel: the current one and those going away.

    ``connect`` opens a new connection (its failures are the caller's to
    explain); ``deadline`` bounds a wait, on the connections' backend.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[Connection]],
        deadline: Deadline,
        retry: RetryPolicy,
    ) -> None:
        self._connect = connect
        self.deadline = deadline
        self.retry = retry
        self._current: Connection | None = None
        self._lock: anyio.Lock | None = None
        # Connections told to go away, still finishing their calls.
        self._leaving: set[Connection] = set()
        self._closed = False

    @property
    def current(self) -> Connection | None:
        """The connection new calls go over, if one is open."""
        return self._current

    async def connection(self) -> Connection:
        """A connection to make a call on: the current one, or a new one."""
        current = self._current
        if current is not None:
            current.catch_up()
            if current.usable:
                return current
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            current = self._current
            if current is not None and current.usable:
                return current
            if self._closed:
                raise ConnectionLost("the channel was closed")
            if current is not None and not current.closed:
                self._leaving.add(current)
            self._leaving = {c for c in self._leaving if not c.closed}
            self._current = await self._connect()
            return self._current

    async def unary(
        self,
        path: str,
        payload: bytes,
        timeout: float | None,  # noqa: ASYNC109 - a gRPC deadline, sent to the server
    ) -> bytes:
        """Make the unary call at ``path``; its one reply message."""
        if timeout is None:
            return await self._unary(path, payload, None)
        async with self.deadline(timeout):
            return await self._unary(path, payload, time.monotonic() + timeout)

    async def _unary(self, path: str, payload: bytes, until: float | None) -> bytes:
        attempt = 1
        while True:
            connection = await self.connection()
            try:
                call = await connection.open(path, payload, _header(until))
                try:
                    reply = await call.receive()
                    if reply is None:
                        raise ProtocolViolation("the server answered without a message")
                    if await call.receive() is not None:
                        raise ProtocolViolation(
                            "the server answered a unary call with more than one message"
                        )
                finally:
                    call.close()
                return reply
            except Unprocessed:
                if attempt >= self.retry.attempts:
                    raise
                await self.pause(connection, attempt, path)
                attempt += 1

    def stream(self, path: str, payload: bytes, timeout: float | None) -> ServerStream:
        """Start the server-streaming call at ``path`` (it opens at the first receive)."""
        return ServerStream(self, path, payload, timeout)

    async def pause(self, connection: Connection, attempt: int, path: str) -> None:
        """Before attempt ``attempt + 1`` of a call ``connection`` did not process."""
        log.debug("%s was not processed; making it again (attempt %d)", path, attempt + 1)
        if connection.usable:
            await _sleep(self.retry.pause(attempt))

    async def aclose(self, bound: float = 5.0) -> None:
        """Close every connection and wait, at most ``bound`` s, for their sockets to close."""
        self._closed = True
        connections = {c for c in (self._current, *self._leaving) if c is not None}
        self._current = None
        self._leaving.clear()
        for connection in connections:
            connection.close()
        with anyio.move_on_after(bound):
            for connection in connections:
                await connection.wait_closed()


class ServerStream:
    """The raw messages of one server-streaming call, made again while none has been seen.

    :meth:`receive` gives each message, then None once the server ended the
    call with OK; :meth:`close` ends the call at once (a reset if the server
    had not ended it). The timeout bounds the whole stream: each wait is
    bounded by what is left of it, so no cancel scope stays open between
    messages.
    """

    __slots__ = ("_attempt", "_call", "_ended", "_path", "_payload", "_pool", "_seen", "_until")

    def __init__(self, pool: Pool, path: str, payload: bytes, timeout: float | None) -> None:
        self._pool = pool
        self._path = path
        self._payload = payload
        self._until = None if timeout is None else time.monotonic() + timeout
        self._call: Call | None = None
        self._attempt = 1
        self._seen = False
        self._ended = False

    async def receive(self) -> bytes | None:
        until = self._until
        if until is None:
            return await self._receive()
        async with self._pool.deadline(max(0.0, until - time.monotonic())):
            return await self._receive()

    async def _receive(self) -> bytes | None:
        pool = self._pool
        while not self._ended:
            call = self._call
            connection: Connection | None = None
            try:
                if call is None:
                    connection = await pool.connection()
                    call = self._call = await connection.open(
                        self._path, self._payload, _header(self._until)
                    )
                message = await call.receive()
            except Unprocessed:
                # Made again only if nothing of it has been seen.
                if call is not None:
                    connection = call.connection
                    call.close()
                self._call = None
                if self._seen or self._attempt >= pool.retry.attempts or connection is None:
                    raise
                await pool.pause(connection, self._attempt, self._path)
                self._attempt += 1
                continue
            if message is None:
                self._call = None
                self._ended = True
            else:
                self._seen = True
            return message
        return None

    def close(self) -> None:
        """End the call now: before the server has ended it, this resets its stream."""
        self._ended = True
        call, self._call = self._call, None
        if call is not None:
            call.close()
