"""A TCP proxy for tests that can wedge: it stops forwarding without closing anything.

What a dead host or a stuck middlebox looks like to a client: the
connection stays open, writes still go into the kernel's buffers, and
nothing ever comes back. ``stall()`` does that to every connection open at
that moment, in both directions; connections made later are forwarded as
usual. It counts the connections and the bytes it forwarded toward the
server.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import anyio.abc


class StallProxy:
    """Forwards ``127.0.0.1:port`` to a server; see the module's docstring."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0
        #: Bytes forwarded from clients to the server.
        self.upstream_bytes = 0
        self._stalls: list[anyio.Event] = []
        self._open: list[anyio.Event] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stall(self) -> None:
        """Stop forwarding on every connection open now, both ways, closing nothing."""
        for wedge in self._open:
            wedge.set()

    async def _pump(
        self,
        source: anyio.abc.ByteStream,
        sink: anyio.abc.ByteStream,
        wedge: anyio.Event,
        upstream: bool,
    ) -> None:
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            while not wedge.is_set():
                data = await source.receive()
                if wedge.is_set():
                    break  # read, and never delivered
                if upstream:
                    self.upstream_bytes += len(data)
                await sink.send(data)
        if wedge.is_set():
            await anyio.sleep_forever()  # wedged: holds both sockets open
        with contextlib.suppress(Exception):
            await sink.send_eof()  # type: ignore[attr-defined]

    async def _serve(self, client: anyio.abc.SocketStream) -> None:
        self.connections += 1
        wedge = anyio.Event()
        self._open.append(wedge)
        async with client:
            try:
                server = await anyio.connect_tcp(*self.target)
            except OSError:
                return
            async with server, anyio.create_task_group() as tg:
                tg.start_soon(self._pump, client, server, wedge, True)
                tg.start_soon(self._pump, server, client, wedge, False)


@contextlib.asynccontextmanager
async def stall_proxy(endpoint: str) -> AsyncIterator[StallProxy]:
    """A :class:`StallProxy` to the ``http://host:port`` ``endpoint``, for the ``async with``."""
    host, _, port = endpoint.removeprefix("http://").rpartition(":")
    proxy = StallProxy(host, int(port))
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    proxy.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy._serve)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()
