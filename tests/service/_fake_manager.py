"""A stand-in for an executor's GrpcServiceManager, to drive a service directly."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio

from flame._proto.v04 import flame as pb
from flame._transport import GrpcLoop, open_grpc_loop, serve, unary_handler


async def _set(event: anyio.Event) -> None:
    event.set()


class FakeManager(pb.GrpcServiceManagerBase):  # type: ignore[misc]
    """Records registrations and their metadata; wakes the test (on its backend) at the first."""

    def __init__(self, loop: GrpcLoop) -> None:
        self.loop = loop
        self.registrations: list[pb.RegisterServiceRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.registered = anyio.Event()

    def __mapping__(self) -> dict[str, Any]:
        return {
            path: unary_handler(
                self.register_service,
                generated.request_type.parse,
                generated.reply_type,
                metadata=True,
            )
            for path, generated in super().__mapping__().items()
        }

    async def register_service(
        self, message: pb.RegisterServiceRequest, metadata: dict[str, str]
    ) -> pb.RegisterServiceResponse:
        self.registrations.append(message)
        self.metadata.append(metadata)
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
