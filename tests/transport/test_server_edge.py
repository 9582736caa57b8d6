"""The edge of every server ``serve`` runs, whatever service it serves.

Wire types are checked for any generated servicer; a message over the limit
is refused from its prefix and the connection goes on; a token, when set,
is required of every call; at the connection cap, a connection with calls in
flight is never the one to go.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import anyio
import pytest

from flame import FlameError, FlameErrorCode
from flame._proto.v04 import flame as pb
from flame._transport import Channel, GrpcLoop, ServerLimits, serve

#: A hang guard, not a timing assertion.
BOUND = 30.0

REGISTER = "/flame.GrpcServiceManager/RegisterService"


class Manager(pb.GrpcServiceManagerBase):  # type: ignore[misc]
    """A generated servicer, as any service of the SDK's is: it records what it is given."""

    def __init__(self) -> None:
        self.seen: list[pb.RegisterServiceRequest] = []

    async def register_service(
        self, message: pb.RegisterServiceRequest
    ) -> pb.RegisterServiceResponse:
        self.seen.append(message)
        return pb.RegisterServiceResponse()


async def _register(channel: Channel, data: bytes) -> pb.RegisterServiceResponse:
    return await channel.call(REGISTER, data, pb.RegisterServiceResponse.parse, timeout=BOUND)


async def test_any_generated_service_has_its_requests_checked(grpc_loop: GrpcLoop) -> None:
    manager = Manager()
    async with (
        serve(grpc_loop, [manager]) as server,
        await Channel.connect(server.address) as channel,
    ):
        # address (a string, field 1) sent as a varint.
        with pytest.raises(FlameError) as raised:
            await _register(channel, b"\x08\x05")
        await _register(channel, bytes(pb.RegisterServiceRequest(service_id="s", address="a")))
    assert raised.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert "RegisterServiceRequest.address should be a string" in raised.value.message
    # The method saw the good request alone.
    assert [m.service_id for m in manager.seen] == ["s"]


async def test_a_message_over_the_limit_is_refused_and_the_connection_goes_on(
    grpc_loop: GrpcLoop,
) -> None:
    manager = Manager()
    limits = ServerLimits(max_message_bytes=1024)
    async with (
        serve(grpc_loop, [manager], limits=limits) as server,
        # A client that would send more than the server reads.
        await Channel.connect(server.address, max_message_bytes=1 << 20) as channel,
    ):
        large = bytes(pb.RegisterServiceRequest(service_id="s" * 200_000))
        with anyio.fail_after(BOUND), pytest.raises(FlameError) as raised:
            await _register(channel, large)
        connection = channel.pool.current
        await _register(channel, bytes(pb.RegisterServiceRequest(service_id="after")))
        assert channel.pool.current is connection
    assert raised.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert "RESOURCE_EXHAUSTED" in raised.value.message
    assert f"{len(large):,} bytes" in raised.value.message
    assert [m.service_id for m in manager.seen] == ["after"]


async def test_a_token_is_required_of_every_call(grpc_loop: GrpcLoop) -> None:
    manager = Manager()
    async with serve(grpc_loop, [manager], auth_token="tok") as server:
        async with await Channel.connect(server.address) as channel:
            with pytest.raises(FlameError) as raised:
                await _register(channel, bytes(pb.RegisterServiceRequest(service_id="x")))
        headers = [("authorization", "Bearer tok")]
        async with await Channel.connect(server.address, headers=headers) as channel:
            await _register(channel, bytes(pb.RegisterServiceRequest(service_id="y")))
    assert raised.value.code is FlameErrorCode.INVALID_CONFIG
    assert "UNAUTHENTICATED" in raised.value.message
    assert [m.service_id for m in manager.seen] == ["y"]


class Slow(pb.GrpcServiceManagerBase):  # type: ignore[misc]
    """Holds each call until released."""

    def __init__(self) -> None:
        # Made on the server's loop, where it is waited for.
        self.release: anyio.Event | None = None
        self.held = 0

    async def register_service(
        self, message: pb.RegisterServiceRequest
    ) -> pb.RegisterServiceResponse:
        self.held += 1
        if self.release is None:
            self.release = anyio.Event()
        await self.release.wait()
        return pb.RegisterServiceResponse()


@pytest.fixture
async def capped(grpc_loop: GrpcLoop) -> AsyncIterator[tuple[str, Manager]]:
    manager = Manager()
    limits = ServerLimits(max_connections=2)
    async with serve(grpc_loop, [manager], limits=limits) as server:
        yield server.address, manager


async def test_at_the_cap_an_idle_connection_makes_room(capped: tuple[str, Manager]) -> None:
    address, _ = capped
    host, port = address.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(5)]
    try:
        async with await Channel.connect(address) as channel:
            with anyio.fail_after(BOUND):
                await _register(channel, bytes(pb.RegisterServiceRequest(service_id="in")))
        # The idle ones were told to go away, oldest first: at most one is left.
        told = [await anyio.to_thread.run_sync(_told_to_go, sock) for sock in idle]
        assert sum(told) >= len(idle) - 1, told
        assert all(told[:-1]), told
    finally:
        for sock in idle:
            sock.close()


def _told_to_go(sock: socket.socket) -> bool:
    """Whether the server says go away on ``sock`` (within a bound; it may say nothing)."""
    sock.settimeout(2.0)
    data = b""
    try:
        while b"idle" not in data:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    return b"idle" in data


async def test_at_the_cap_a_busy_connection_is_kept_and_the_new_one_refused(
    grpc_loop: GrpcLoop,
) -> None:
    slow = Slow()
    limits = ServerLimits(max_connections=1)
    async with (
        serve(grpc_loop, [slow], limits=limits) as server,
        await Channel.connect(server.address) as busy,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_register, busy, bytes(pb.RegisterServiceRequest(service_id="held")))
        with anyio.fail_after(BOUND):
            while not await grpc_loop.run(_held, slow):  # noqa: ASYNC110 - state on the loop
                await anyio.sleep(0.01)
        with anyio.fail_after(BOUND), pytest.raises(FlameError) as raised:
            async with await Channel.connect(server.address) as late:
                await _register(late, bytes(pb.RegisterServiceRequest(service_id="late")))
        await grpc_loop.run(_release, slow)
    # The held call finished (the task group waited for it); the late one was
    # refused. (Its message says why when the client reads the GOAWAY before
    # the close: not always so under trio.)
    assert raised.value.code is FlameErrorCode.UNAVAILABLE


async def _held(slow: Slow) -> bool:
    return slow.held > 0


async def _release(slow: Slow) -> None:
    assert slow.release is not None
    slow.release.set()
