"""Fixtures of the transport tests: a grpc loop, a served Frontend, a channel to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from transport_helpers import Frontend

from flame._proto.v04 import flame as pb
from flame._transport import Channel, GrpcLoop, Server, open_grpc_loop, serve


@pytest.fixture
async def grpc_loop(anyio_backend: str) -> AsyncIterator[GrpcLoop]:
    loop = open_grpc_loop()
    try:
        yield loop
    finally:
        await loop.aclose()


@pytest.fixture
def frontend() -> Frontend:
    return Frontend()


@pytest.fixture
async def server(grpc_loop: GrpcLoop, frontend: Frontend) -> AsyncIterator[Server[object]]:
    async with serve(grpc_loop, [frontend]) as running:
        yield running


@pytest.fixture
async def channel(server: Server[object]) -> AsyncIterator[Channel]:
    async with await Channel.connect(server.address) as connected:
        yield connected


@pytest.fixture
def stub(channel: Channel) -> pb.FrontendStub:
    return pb.FrontendStub(channel)
