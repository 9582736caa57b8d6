"""Serving on, and calling over, a Unix socket named by its path."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from collections.abc import Iterator

import anyio
import pytest
from transport_helpers import Frontend

from flame import FlameError, FlameErrorCode
from flame._proto.v04 import flame as pb
from flame._transport import Channel, Endpoint, GrpcLoop, serve
from flame._transport._server import UNIX_PATH_MAX


@pytest.fixture
def short_dir() -> Iterator[str]:
    """A directory whose paths fit a Unix socket's (pytest's own can be too long)."""
    with tempfile.TemporaryDirectory(prefix="fl-", dir="/tmp") as directory:
        yield directory


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("unix:/run/flame/a.sock", "/run/flame/a.sock"),
        ("unix:///run/flame/a.sock", "/run/flame/a.sock"),
        ("unix:relative/a.sock", "relative/a.sock"),
    ],
)
def test_unix_endpoints_name_a_path(url: str, path: str) -> None:
    endpoint = Endpoint.parse(url)
    assert (endpoint.path, endpoint.tls, endpoint.authority) == (path, False, "localhost")
    assert Endpoint.unix(path).path == path


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("unix://host/a.sock", "a Unix socket endpoint is 'unix:/absolute/path'"),
        ("unix:", "names no socket"),
    ],
)
def test_bad_unix_endpoints_say_what_to_write(url: str, says: str) -> None:
    with pytest.raises(FlameError) as bad:
        Endpoint.parse(url)
    assert bad.value.code is FlameErrorCode.INVALID_CONFIG
    assert says in bad.value.message


async def test_calls_and_streams_over_a_unix_socket(grpc_loop: GrpcLoop, short_dir: str) -> None:
    path = os.path.join(short_dir, "frontend.sock")
    async with serve(grpc_loop, [Frontend()], path=path) as server:
        assert server.address == f"unix:{path}"
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        async with await Channel.connect(server.address) as channel:
            stub = pb.FrontendStub(channel)
            task = await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="7"))
            async with channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="8")) as it:
                states = [t.status.state async for t in it]
    assert task.metadata.id == "7"
    assert states[-1] is pb.TaskState.Succeed
    # The socket's file goes with the server; nothing else is left behind.
    assert os.listdir(short_dir) == []


async def test_a_stale_socket_file_is_replaced(grpc_loop: GrpcLoop, short_dir: str) -> None:
    path = os.path.join(short_dir, "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, with nothing listening behind it
    async with (
        serve(grpc_loop, [Frontend()], path=path) as server,
        await Channel.connect(server.address) as channel,
    ):
        stub = pb.FrontendStub(channel)
        task = await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="1"))
    assert task.metadata.id == "1"


async def test_a_socket_path_too_long_is_refused_clearly(
    grpc_loop: GrpcLoop, short_dir: str
) -> None:
    path = os.path.join(short_dir, "s" * UNIX_PATH_MAX + ".sock")
    with pytest.raises(FlameError) as refused:
        async with serve(grpc_loop, [Frontend()], path=path):
            pass
    assert refused.value.code is FlameErrorCode.INVALID_CONFIG
    assert f"may be at most {UNIX_PATH_MAX}" in refused.value.message
    assert os.listdir(short_dir) == []


async def test_connecting_where_nothing_listens_names_the_socket(short_dir: str) -> None:
    url = f"unix:{short_dir}/absent.sock"
    with pytest.raises(FlameError) as unreachable:
        await Channel.connect(url, connect_timeout=5)
    assert unreachable.value.code is FlameErrorCode.UNAVAILABLE
    assert url in unreachable.value.message
    assert "no such file or directory" in unreachable.value.message


@pytest.mark.parametrize("where", ["tcp", "unix"])
async def test_a_server_stops_while_a_client_keeps_its_connection(
    grpc_loop: GrpcLoop, short_dir: str, where: str
) -> None:
    # Since Python 3.12 an asyncio server waits for its connections to end;
    # an executor keeps its connection to a service open for as long as it
    # likes, so the server must end them itself.
    path = os.path.join(short_dir, "kept.sock") if where == "unix" else None
    async with await _kept_connection(grpc_loop, path) as channel:
        stub = pb.FrontendStub(channel)
        with pytest.raises(FlameError) as gone:
            await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="2"))
    assert gone.value.code is FlameErrorCode.UNAVAILABLE


async def _kept_connection(grpc_loop: GrpcLoop, path: str | None) -> Channel:
    """A client connection that was used, to a server that has stopped since."""
    with anyio.fail_after(20):  # leaving serve() hung here before
        async with serve(grpc_loop, [Frontend()], path=path) as server:
            channel = await Channel.connect(server.address)
            stub = pb.FrontendStub(channel)
            task = await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="1"))
            assert task.metadata.id == "1"
    return channel
