"""A stand-in for an executor's GrpcServiceManager, to drive a service directly."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio

from flame._proto.v04 import flame as pb
from flame._transport import GrpcLoop, open_grpc_loop, serve


async def _set(event: anyio.Event) -> None:
    event.set()


class FakeManager(pb.GrpcServiceManagerBase):  # type: ignore[misc]
    """Records registrations; wakes the test (on its own backend) at the first."""

    def __init__(self, loop: GrpcLoop) -> None:
        self.loop = loop
        self.registrations: list[pb.RegisterServiceRequest] = []
        self.registered = anyio.Event()

    async def register_service(
        self, message: pb.RegisterServiceRequest
    ) -> pb.RegisterServiceResponse:
        self.registrations.append(message)
        await self.loop.call_back(_set, self.registered)
        return pb.RegisterServiceResponse()


@contextlib.asynccontextmanager
async def fake_manager() -> AsyncIterator[tuple[FakeManager, str]]:
    """A FakeManager served on 127.0.0.1, and its address."""
    loop = open_grpc_loop()
    try:
        manager = FakeManager(loop)
        async with serve(loop, [manager]) as server:
            yield manager, server.address
    finally:
        await loop.aclose()
