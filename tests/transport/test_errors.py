"""Every failure leaves the transport as a FlameError naming the call, endpoint and cause."""

from __future__ import annotations

import socket
import threading

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from flame import FlameError, FlameErrorCode
from flame._proto.v04 import flame as pb
from flame._transport import Channel, Endpoint, GrpcLoop, refuse, serve
from flame._transport._status import Status as ClientStatus
from flame._transport._status import code_for_status

# What a user should get for each status a server may answer with, written
# out here rather than read from the table, so the table is checked.
EXPECTED = {
    Status.CANCELLED: FlameErrorCode.UNAVAILABLE,
    Status.UNKNOWN: FlameErrorCode.INTERNAL,  # with a reason: the server failed
    Status.INVALID_ARGUMENT: FlameErrorCode.INVALID_ARGUMENT,
    Status.DEADLINE_EXCEEDED: FlameErrorCode.TIMEOUT,
    Status.NOT_FOUND: FlameErrorCode.NOT_FOUND,
    Status.ALREADY_EXISTS: FlameErrorCode.ALREADY_EXISTS,
    Status.PERMISSION_DENIED: FlameErrorCode.INVALID_CONFIG,
    Status.RESOURCE_EXHAUSTED: FlameErrorCode.INVALID_ARGUMENT,
    Status.FAILED_PRECONDITION: FlameErrorCode.INVALID_STATE,
    Status.ABORTED: FlameErrorCode.INVALID_STATE,
    Status.OUT_OF_RANGE: FlameErrorCode.INVALID_ARGUMENT,
    Status.UNIMPLEMENTED: FlameErrorCode.UNIMPLEMENTED,
    Status.INTERNAL: FlameErrorCode.INTERNAL,
    Status.UNAVAILABLE: FlameErrorCode.UNAVAILABLE,
    Status.DATA_LOSS: FlameErrorCode.INTERNAL,
    Status.UNAUTHENTICATED: FlameErrorCode.INVALID_CONFIG,
}


class Refusing(pb.FrontendBase):
    """Answers GetTask and WatchTask with the status and message it was given."""

    def __init__(self, status: Status, message: str | None) -> None:
        self.status = status
        self.message = message

    async def get_task(self, message: pb.GetTaskRequest) -> pb.Task:
        raise GRPCError(self.status, self.message)

    async def watch_task(self, message: pb.WatchTaskRequest):  # type: ignore[no-untyped-def]
        yield pb.Task(metadata=pb.Metadata(id=message.task_id))
        raise GRPCError(self.status, self.message)


class RefusingByName(pb.FrontendBase):
    async def get_task(self, message: pb.GetTaskRequest) -> pb.Task:
        raise refuse("FAILED_PRECONDITION", f"session {message.session_id} is closed")


class Crashing(pb.FrontendBase):
    async def get_task(self, message: pb.GetTaskRequest) -> pb.Task:
        raise RuntimeError("a bug in the handler")


def test_every_status_but_ok_has_an_expected_code() -> None:
    assert set(EXPECTED) == set(Status) - {Status.OK}


def test_the_clients_statuses_are_grpcs() -> None:
    # The client reads statuses with its own enum; the servers raise grpclib's.
    assert [(s.name, s.value) for s in ClientStatus] == [(s.name, s.value) for s in Status]


@pytest.mark.parametrize("status", list(EXPECTED), ids=lambda status: status.name)
async def test_a_status_becomes_its_code_naming_call_endpoint_and_message(
    grpc_loop: GrpcLoop, status: Status
) -> None:
    said = f"the server says {status.name.lower()} here"
    async with (
        serve(grpc_loop, [Refusing(status, said)]) as server,
        await Channel.connect(server.address) as channel,
    ):
        stub = pb.FrontendStub(channel)
        with pytest.raises(FlameError) as caught:
            await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="1"))
        error = caught.value
        assert error.code is EXPECTED[status]
        assert "GetTask" in error.message
        assert server.address in error.message
        assert said in error.message
        assert status.name in error.message

        # The same for a stream that fails after its first message.
        received = []
        with pytest.raises(FlameError) as caught:
            async with channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="9")) as it:
                async for task in it:
                    received.append(task.metadata.id)
        assert received == ["9"]
        assert caught.value.code is EXPECTED[status]
        assert "WatchTask" in caught.value.message and said in caught.value.message


@pytest.mark.parametrize("said", ["unknown", None])
async def test_the_v04_refusal_unknown_is_explained(grpc_loop: GrpcLoop, said: str | None) -> None:
    async with (
        serve(grpc_loop, [Refusing(Status.UNKNOWN, said)]) as server,
        await Channel.connect(server.address) as channel,
    ):
        stub = pb.FrontendStub(channel)
        with pytest.raises(FlameError) as caught:
            await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="1"))
    assert caught.value.code is FlameErrorCode.INVALID_STATE
    assert "GetTask" in caught.value.message and server.address in caught.value.message
    assert "without a reason" in caught.value.message
    assert "session is closed" in caught.value.message


def test_the_table_without_a_message_reads_unknown_as_the_v04_refusal() -> None:
    unknown = ClientStatus.UNKNOWN
    assert code_for_status(unknown) is FlameErrorCode.INVALID_STATE
    assert code_for_status(unknown, "unknown") is FlameErrorCode.INVALID_STATE
    assert code_for_status(unknown, "Internal Server Error") is FlameErrorCode.INTERNAL
    assert code_for_status(ClientStatus.OK) is FlameErrorCode.INTERNAL


async def test_a_crashing_handler_is_an_internal_error(grpc_loop: GrpcLoop) -> None:
    async with (
        serve(grpc_loop, [Crashing()]) as server,
        await Channel.connect(server.address) as channel,
    ):
        stub = pb.FrontendStub(channel)
        with pytest.raises(FlameError) as caught:
            await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="1"))
        assert caught.value.code is FlameErrorCode.INTERNAL
        assert "GetTask" in caught.value.message

        # A method the server leaves to the generated base is unimplemented.
        with pytest.raises(FlameError) as caught:
            await channel.unary(stub.delete_task, pb.DeleteTaskRequest(task_id="1"))
        assert caught.value.code is FlameErrorCode.UNIMPLEMENTED
        assert "does not implement DeleteTask" in caught.value.message


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_connection_refused_is_unavailable_naming_the_address(anyio_backend: str) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    threads = threading.active_count()
    with pytest.raises(FlameError) as caught:
        await Channel.connect(url, connect_timeout=5)
    assert caught.value.code is FlameErrorCode.UNAVAILABLE
    assert url in caught.value.message
    assert "refused" in caught.value.message.lower()
    # A refused connect leaves no loop thread behind.
    assert threading.active_count() == threads


async def test_a_silent_server_is_unavailable_after_the_connect_timeout(anyio_backend: str) -> None:
    # A listening socket that accepts (in the kernel) and never speaks: the
    # TLS handshake waits for an answer that never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"https://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(FlameError) as caught:
            await Channel.connect(url, connect_timeout=0.3)
    assert caught.value.code is FlameErrorCode.UNAVAILABLE
    assert url in caught.value.message
    assert "no answer within 0.3 s" in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        "invalid://address",
        "invalid://127.0.0.1:8080",
        "http://127.0.0.1",
        "http://127.0.0.1:8080/flame",
        "http://127.0.0.1:8080?x=1",
        "http://:8080",
        "http://127.0.0.1:0",
        "http://127.0.0.1:99999",
        "127.0.0.1:8080",
        "",
        "   ",
    ],
)
def test_endpoint_parse_refuses_bad_addresses(url: str) -> None:
    with pytest.raises(FlameError) as caught:
        Endpoint.parse(url)
    assert caught.value.code is FlameErrorCode.INVALID_CONFIG
    assert repr(url) in caught.value.message


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1", 8080, False),
        ("https://flame.example.com:443", "flame.example.com", 443, True),
        ("http://[::1]:9000/", "::1", 9000, False),
        ("  grpcs://node:1  ", "node", 1, True),
    ],
)
def test_endpoint_parse_accepts_good_addresses(url: str, host: str, port: int, tls: bool) -> None:
    endpoint = Endpoint.parse(url)
    assert (endpoint.host, endpoint.port, endpoint.tls) == (host, port, tls)
    assert str(endpoint) == url.strip()


async def test_connect_refuses_a_bad_address_before_opening_anything(anyio_backend: str) -> None:
    threads = threading.active_count()
    with pytest.raises(FlameError) as caught:
        await Channel.connect("invalid://address")
    assert caught.value.code is FlameErrorCode.INVALID_CONFIG
    with pytest.raises(FlameError) as caught:
        await Channel.connect("http://127.0.0.1:1", ca_file="/nonexistent/ca.pem")
    assert caught.value.code is FlameErrorCode.INVALID_CONFIG
    assert "not https://" in caught.value.message
    assert threading.active_count() == threads


async def test_refuse_fails_the_call_with_the_named_status(grpc_loop: GrpcLoop) -> None:
    async with (
        serve(grpc_loop, [RefusingByName()]) as server,
        await Channel.connect(server.address) as channel,
    ):
        stub = pb.FrontendStub(channel)
        with pytest.raises(FlameError) as caught:
            await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="1", session_id="4"))
    assert caught.value.code is FlameErrorCode.INVALID_STATE
    assert "FAILED_PRECONDITION: session 4 is closed" in caught.value.message
