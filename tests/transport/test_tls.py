"""https:// endpoints: TLS with a CA file, and clear refusals without one."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from transport_helpers import Frontend

from flame import FlameError, FlameErrorCode
from flame._proto.v04 import flame as pb
from flame._transport import Channel, GrpcLoop, serve
from flame._wire import decode_task, encode_task_request

GET_TASK = "/flame.Frontend/GetTask"
WATCH_TASK = "/flame.Frontend/WatchTask"


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(authority: trustme.CA, tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    yield str(path)


async def test_tls_with_the_ca_file_carries_calls_and_streams(
    grpc_loop: GrpcLoop, server_context: ssl.SSLContext, ca_file: str
) -> None:
    async with serve(grpc_loop, [Frontend()], ssl=server_context) as server:
        assert server.address.startswith("https://127.0.0.1:")
        async with await Channel.connect(server.address, ca_file=ca_file) as channel:
            assert channel.endpoint.tls
            stub = pb.FrontendStub(channel)
            task = await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="7"))
            assert task.metadata.id == "7"
            async with channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="7")) as it:
                assert len([update async for update in it]) == 3
            # The per-task calls, with the hand-written codec, on the same connection.
            request = encode_task_request("7", "")
            assert (await channel.call(GET_TASK, request, decode_task)).id == "7"
            async with channel.open_stream(WATCH_TASK, request, decode_task) as updates:
                assert len([update async for update in updates]) == 3


async def test_tls_without_the_ca_is_refused_with_advice(
    grpc_loop: GrpcLoop, server_context: ssl.SSLContext
) -> None:
    async with serve(grpc_loop, [Frontend()], ssl=server_context) as server:
        # Only the system's CAs: they do not know our test CA.
        with pytest.raises(FlameError) as caught:
            await Channel.connect(server.address, connect_timeout=5)
    assert caught.value.code is FlameErrorCode.INVALID_CONFIG
    assert server.address in caught.value.message
    assert "certificate is not trusted" in caught.value.message
    assert "CA" in caught.value.message


async def test_tls_with_another_ca_is_refused(
    grpc_loop: GrpcLoop, server_context: ssl.SSLContext, tmp_path: Path
) -> None:
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    async with serve(grpc_loop, [Frontend()], ssl=server_context) as server:
        with pytest.raises(FlameError) as caught:
            await Channel.connect(server.address, ca_file=str(other), connect_timeout=5)
    assert caught.value.code is FlameErrorCode.INVALID_CONFIG
    assert "certificate is not trusted" in caught.value.message


async def test_tls_to_a_plain_server_is_refused(grpc_loop: GrpcLoop, ca_file: str) -> None:
    async with serve(grpc_loop, [Frontend()]) as server:
        url = server.address.replace("http://", "https://")
        with pytest.raises(FlameError) as caught:
            await Channel.connect(url, ca_file=ca_file, connect_timeout=5)
    assert caught.value.code in (FlameErrorCode.INVALID_CONFIG, FlameErrorCode.UNAVAILABLE)
    assert url in caught.value.message


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
async def test_a_bad_ca_file_is_invalid_config(
    anyio_backend: str, tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    with pytest.raises(FlameError) as caught:
        await Channel.connect("https://127.0.0.1:1", ca_file=str(path))
    assert caught.value.code is FlameErrorCode.INVALID_CONFIG
    assert str(path) in caught.value.message
