"""The connection under trio, read by the callers that wait on it.

trio has no callbacks to hand bytes to a protocol, and a reader task would
have to belong to some nursery that lives as long as the connection, which
no scope of the caller's does (``await flame.connect()`` returns an open
connection). So nobody reads in the background: a caller that waits for its
stream takes the *read turn* (waits until the socket is readable, reads, and
hands every frame to the protocol, waking the calls it concerns) until its
own stream has what it waits for, then hands the turn to another waiting
caller. Between calls the connection is a socket and nothing else; a
connection nobody reads catches up, without waiting, before it carries a new
call (:meth:`TrioConnection.catch_up`).

Writes never wait either: the socket is non-blocking, a write sends what the
kernel takes at once, and the rest is kept for a waiting caller to send when
the socket is writable. So ending a call resets its stream at once, from
plain synchronous code (cancellation, ``break``, a collected watcher).

TLS is done here too, with :class:`ssl.MemoryBIO`, for the same reason: a
write must be able to go out without awaiting.

The keepalive (:meth:`Connection.keepalive_check
<._connection.Connection.keepalive_check>`) is looked at by the same
callers: each wait for the socket ends, at the latest, when the keepalive is
due, so a caller waiting on a silent connection sends the PING and, if
nothing answers, gives the connection up. A connection nobody waits on needs
no keepalive: it has no call in flight.
"""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
from typing import Any

import trio

from ._connection import Connection
from ._endpoint import Endpoint
from ._frames import preface

__all__ = ["TrioConnection", "connect", "deadline"]

#: How much one read takes from the socket at most.
RECEIVE_BYTES = 1 << 16


class _TLS:
    """A TLS client session over two memory buffers: what came in, what is to go out."""

    __slots__ = ("incoming", "obj", "outgoing")

    def __init__(self, context: ssl.SSLContext, host: str) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_hostname=host)


class _Waiter:
    """A caller parked until the protocol wakes it: the parts of a Future the protocol uses."""

    __slots__ = ("reading", "state", "task")

    def __init__(self) -> None:
        self.state = 0  # 0 waiting, 1 woken, 2 given up (cancelled)
        #: The trio task, while it sleeps.
        self.task: Any = None
        #: The scope of its wait for the socket, while it has the read turn.
        self.reading: trio.CancelScope | None = None

    def done(self) -> bool:
        return self.state != 0

    def cancelled(self) -> bool:
        return self.state == 2

    def set_result(self, _: None) -> None:
        if self.state == 0:
            self.state = 1
            self.rouse()
            # Woken by something other than what it read (see _read): it
            # stops waiting for the socket.
            if self.reading is not None:
                self.reading.cancel()

    def rouse(self) -> None:
        """Let the sleeping task run again, to look at the connection anew."""
        task = self.task
        if task is not None:
            self.task = None
            trio.lowlevel.reschedule(task)


class TrioConnection(Connection):
    """The protocol of :mod:`._connection` over a non-blocking socket, driven by its callers."""

    def __init__(self, sock: socket.socket, tls: _TLS | None, **settings: Any) -> None:
        self._sock = sock
        self._tls = tls
        #: Bytes the kernel did not take yet, in order.
        self._unsent = bytearray()
        #: The waiter of the caller holding the read turn.
        self._reader: _Waiter | None = None
        self._flushing = False
        #: Callers asleep while another reads, oldest first.
        self._sleepers: dict[_Waiter, None] = {}
        self._closed = False
        super().__init__(**settings)
        self._write(preface())

    # -- waiting ------------------------------------------------------------

    def waiter(self) -> _Waiter:
        return _Waiter()

    async def park(self, waiter: _Waiter) -> None:
        try:
            while not waiter.done():
                if self._closed:
                    # Every waiter is woken as the connection shuts; this one
                    # must look at the error itself.
                    waiter.state = 1
                elif self._unsent and not self._flushing:
                    await self._flush()
                elif self._reader is None or self._reader is waiter:
                    self._reader = waiter
                    await self._read(waiter)
                else:
                    await self._sleep(waiter)
        except BaseException:
            if waiter.state == 0:
                waiter.state = 2
            raise
        finally:
            if self._reader is waiter:
                self._reader = None
            if self._reader is None:
                # The turn is free: another caller waiting must take it.
                self._rouse_sleeper()

    async def _sleep(self, waiter: _Waiter) -> None:
        waiter.task = trio.lowlevel.current_task()
        self._sleepers[waiter] = None

        def abort(_: Any) -> Any:
            waiter.task = None
            return trio.lowlevel.Abort.SUCCEEDED

        try:
            await trio.lowlevel.wait_task_rescheduled(abort)
        finally:
            self._sleepers.pop(waiter, None)

    def _rouse_sleeper(self) -> None:
        """Wake one sleeping caller, to take the turn that has come free."""
        for sleeper in self._sleepers:
            if sleeper.task is not None:
                sleeper.rouse()
                return

    # -- reading --------------------------------------------------------------

    def _keepalive_deadline(self) -> float:
        """Until when a wait may last before the keepalive must be looked at (see the module)."""
        if self.keepalive is None:
            return math.inf
        due = self.keepalive_check(trio.current_time())
        return math.inf if due is None else due

    async def _read(self, waiter: _Waiter) -> None:
        """One read turn: wait for the socket, or take in what it holds."""
        try:
            data = self._sock.recv(RECEIVE_BYTES)
        except BlockingIOError:
            deadline = self._keepalive_deadline()
            if self._closed:
                return  # given up by the keepalive: the calls have been told
            # Closed under us, the calls have been told.
            with contextlib.suppress(trio.ClosedResourceError):
                if self._slot_waiters and waiter in self._slot_waiters:
                    # Waiting for a stream, which a caller leaving its call
                    # frees without a byte arriving: that must end the wait.
                    try:
                        with trio.CancelScope(deadline=deadline) as waiter.reading:
                            await trio.lowlevel.wait_readable(self._sock)
                    finally:
                        waiter.reading = None
                elif deadline != math.inf:
                    # Woken at the deadline to look at the keepalive again.
                    with trio.CancelScope(deadline=deadline):
                        await trio.lowlevel.wait_readable(self._sock)
                else:
                    await trio.lowlevel.wait_readable(self._sock)
            return
        except OSError as exc:
            self._lost(exc)
            return
        self._take(data)
        # Data was there at once: still let others run, and a cancellation in.
        await trio.lowlevel.checkpoint()

    def catch_up(self) -> None:
        if self._reader is not None or self._sleepers:
            return  # read by a waiting caller now, or soon
        while not self._closed:
            try:
                data = self._sock.recv(RECEIVE_BYTES)
            except BlockingIOError:
                return
            except OSError as exc:
                self._lost(exc)
                return
            self._take(data)

    def _take(self, data: bytes) -> None:
        """Hand what was read to the protocol; b"" is the end of the connection."""
        if self._tls is None:
            if data:
                self.data_received(data)
            else:
                self._lost(None)
            return
        tls = self._tls
        if data:
            tls.incoming.write(data)
        else:
            tls.incoming.write_eof()
        plain = bytearray()
        ended: BaseException | None = None
        eof = False
        try:
            while True:
                plain += tls.obj.read(RECEIVE_BYTES)
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            eof = True
        except ssl.SSLError as exc:
            ended = exc
        if tls.outgoing.pending:
            # TLS 1.3 may answer what it read (a key update).
            self._send(tls.outgoing.read())
        if plain:
            self.data_received(plain)
        if ended is not None or eof:
            self._lost(ended)

    # -- writing --------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._closed:
            return
        tls = self._tls
        if tls is not None:
            try:
                tls.obj.write(data)
            except ssl.SSLError as exc:
                self._lost(exc)
                return
            data = tls.outgoing.read()
        self._send(data)

    def _send(self, data: bytes) -> None:
        if self._unsent:
            self._unsent += data  # after what waits: order is kept
            return
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._lost(exc)
            return
        if sent < len(data):
            self._unsent += memoryview(data)[sent:]
            # A waiting caller sends the rest once the socket takes more.
            self._rouse_sleeper()

    async def _flush(self) -> None:
        """One write turn: wait until the socket takes more, and give it what waits."""
        self._flushing = True
        try:
            # A peer that stopped reading stops us here: the keepalive bounds it.
            with trio.CancelScope(deadline=self._keepalive_deadline()) as scope:
                await trio.lowlevel.wait_writable(self._sock)
            if scope.cancelled_caught or self._closed:
                return
            sent = self._sock.send(self._unsent)
            del self._unsent[:sent]
        except (BlockingIOError, trio.ClosedResourceError):
            pass
        except OSError as exc:
            self._lost(exc)
        finally:
            self._flushing = False

    # -- closing --------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_closed(self) -> None:
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        self._lost(None)

    def abort(self) -> None:
        self._unsent.clear()
        self._lost(None)

    def _lost(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        sock = self._sock
        tls = self._tls
        if tls is not None and exc is None:
            # Tell the server we are done (close_notify), as far as the
            # kernel takes it now.
            with contextlib.suppress(ssl.SSLError):
                tls.obj.unwrap()
            self._unsent += tls.outgoing.read()
        if self._unsent:
            with contextlib.suppress(OSError):
                sock.send(self._unsent)
            self._unsent.clear()
        _drain(sock)  # unread bytes would make the kernel reset the connection
        with contextlib.suppress(RuntimeError):  # not inside trio.run
            trio.lowlevel.notify_closing(sock)
        sock.close()
        self.connection_lost(exc)


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(RECEIVE_BYTES):
            pass
    except OSError:
        pass


async def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            sent = 0
        view = view[sent:]
        if view:
            await trio.lowlevel.wait_writable(sock)


async def _receive(sock: socket.socket) -> bytes:
    while True:
        try:
            return sock.recv(RECEIVE_BYTES)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)


async def _handshake(sock: socket.socket, context: ssl.SSLContext, host: str) -> _TLS:
    tls = _TLS(context, host)
    while True:
        try:
            tls.obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            await _send_all(sock, tls.outgoing.read())
            data = await _receive(sock)
            if data:
                tls.incoming.write(data)
            else:
                tls.incoming.write_eof()
    await _send_all(sock, tls.outgoing.read())
    return tls


async def connect(
    endpoint: Endpoint, context: ssl.SSLContext | None, **settings: Any
) -> TrioConnection:
    """Open a connection to ``endpoint`` (TLS with ``context``) in the running trio.

    A ``unix:`` endpoint is a Unix socket, without TLS. Returns once the
    socket is connected and TLS is set up; the server's SETTINGS are waited
    for by the first call.
    """
    if endpoint.path is not None:
        stream = await trio.open_unix_socket(endpoint.path)
    else:
        stream = await trio.open_tcp_stream(endpoint.host, endpoint.port)
    # The socket itself, not trio's stream around it: writes must not wait.
    sock = socket.socket(fileno=stream.socket.detach())
    try:
        sock.setblocking(False)
        tls = None
        if context is not None:
            tls = await _handshake(sock, context, endpoint.host)
        return TrioConnection(sock, tls, **settings)
    except BaseException:
        sock.close()
        raise


class _Deadline:
    """Bounds a wait by ``delay`` seconds, raising TimeoutError: one trio cancel scope."""

    __slots__ = ("_scope",)

    def __init__(self, delay: float) -> None:
        self._scope = trio.CancelScope(deadline=trio.current_time() + delay)

    async def __aenter__(self) -> None:
        self._scope.__enter__()

    async def __aexit__(self, *exc: Any) -> bool:
        scope = self._scope
        handled = scope.__exit__(*exc)
        if scope.cancelled_caught:
            raise TimeoutError
        return handled


#: Bounds a wait, as :func:`asyncio.timeout` does.
deadline = _Deadline
