"""The connection under asyncio: an asyncio protocol on the caller's loop.

asyncio calls :class:`AsyncioConnection` as bytes arrive and when the socket
goes; writes go to the transport, which sends at once what the kernel takes
and keeps the rest. So a connection adds no task to the loop: between calls
it is callbacks and a socket, and a call waits on a future. A call's
deadline is asyncio's own timeout (:func:`deadline`): one timer handle. The
keepalive is one more, armed while calls are in flight.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from typing import Any, cast

import anyio

from ._connection import Connection
from ._endpoint import Endpoint
from ._frames import preface

__all__ = ["AsyncioConnection", "connect", "deadline"]


class AsyncioConnection(Connection, asyncio.Protocol):
    """The protocol of :mod:`._connection`, driven by asyncio's callbacks."""

    def __init__(self, **settings: Any) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._gone = self._loop.create_future()
        self._keepalive_timer: asyncio.TimerHandle | None = None
        super().__init__(**settings)

    def arm_keepalive(self) -> None:
        self._look_at_keepalive()

    def _look_at_keepalive(self) -> None:
        self._keepalive_timer = None
        due = self.keepalive_check(self._loop.time())
        if due is not None and self._transport is not None:
            self._keepalive_timer = self._loop.call_at(due, self._look_at_keepalive)

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

    def abort(self) -> None:
        # close() would wait to send what the transport holds, to a peer gone.
        if self._transport is not None:
            self._transport.abort()

    @property
    def closed(self) -> bool:
        return self._gone.done()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._gone)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(preface())

    def connection_lost(self, exc: BaseException | None) -> None:
        self._transport = None
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None
        super().connection_lost(exc)
        if not self._gone.done():
            self._gone.set_result(None)


async def connect(
    endpoint: Endpoint, context: ssl.SSLContext | None, **settings: Any
) -> AsyncioConnection:
    """Open a connection to ``endpoint`` (TLS with ``context``) on the running loop.

    A ``unix:`` endpoint is a Unix socket, without TLS. Returns once the
    socket is connected (and TLS is set up); the server's SETTINGS are
    waited for by the first call.
    """
    loop = asyncio.get_running_loop()
    if endpoint.path is not None:
        _, connection = await loop.create_unix_connection(
            lambda: AsyncioConnection(**settings), endpoint.path
        )
        return connection
    _, connection = await loop.create_connection(
        lambda: AsyncioConnection(**settings),
        endpoint.host,
        endpoint.port,
        ssl=context,
        server_hostname=endpoint.host if context is not None else None,
    )
    return connection


class _FailAfter:
    """``anyio.fail_after`` as an async context manager, for Python 3.10."""

    __slots__ = ("_scope",)

    def __init__(self, delay: float) -> None:
        self._scope = anyio.fail_after(delay)

    async def __aenter__(self) -> None:
        self._scope.__enter__()

    async def __aexit__(self, *exc: Any) -> bool | None:
        return self._scope.__exit__(*exc)


#: Bounds a wait by ``delay`` seconds, raising TimeoutError: asyncio's own
#: timeout where there is one, a quarter of the cost of an anyio cancel scope.
deadline: Any = _FailAfter
if sys.version_info >= (3, 11):
    deadline = asyncio.timeout
