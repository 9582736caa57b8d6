"""The lean paths: Channel.call, Channel.open_stream, unary_handler, server_stream_handler.

They carry the calls made once or more per task. Each is checked against the
generated stub path (Channel.unary, Channel.stream) it stands in for: the same
answers, the same FlameErrors, the same behaviour on timeout and cancellation.
Every scenario runs against a server whose GetTask and WatchTask are the
generated handlers and against one where they are built with
:func:`unary_handler` and :func:`server_stream_handler`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import grpclib.const
import pytest
from transport_helpers import BOUND, Frontend, wait_until

from flame import FlameError, FlameErrorCode
from flame._proto.v04 import flame as pb
from flame._transport import (
    CLOSED_STREAMS_KEPT,
    SERVER_MAX_STREAMS,
    Channel,
    GrpcLoop,
    refuse,
    server_stream_handler,
    unary_handler,
)
from flame._transport._edge import ServerEdge
from flame._transport._limits import ServerLimits
from flame._transport._server import _BatchedWrites, _BatchingServer
from flame._wire import decode_get_task, decode_task, decode_watch_task, encode_task_request

GET_TASK = "/flame.Frontend/GetTask"
WATCH_TASK = "/flame.Frontend/WatchTask"

#: More calls at once than h2's default limit of 100 concurrent streams.
IN_FLIGHT = 200


class Service(Frontend):
    """The helpers' Frontend, plus refusals, a crash, and a gate.

    ``task_id`` picks the behaviour on top of the helpers' ones:
    ``"refuse:STATUS:message"`` fails with that status (WatchTask after one
    message), ``"crash"`` raises an unexpected error, ``"gate"`` answers only
    once :data:`IN_FLIGHT` gated calls are in the handler at the same time.
    With ``lean``, GetTask and WatchTask are served by the lean handlers.
    """

    def __init__(self, lean: bool) -> None:
        super().__init__()
        self.lean = lean
        self.gated = 0

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        mapping = super().__mapping__()
        if self.lean:
            lean = {
                GET_TASK: unary_handler(self.get_task, decode_get_task, pb.Task),
                WATCH_TASK: server_stream_handler(self.watch_task, decode_watch_task, pb.Task),
            }
            for path, handler in lean.items():
                mapping[path] = handler._replace(func=self._recorded(handler.func))
        return mapping

    async def _gate(self) -> None:
        self.gated += 1
        # Polled on the grpc loop; the bound only keeps a broken server from
        # hanging the test (the client then sees the wrong answer).
        with anyio.move_on_after(BOUND):
            while self.gated < IN_FLIGHT:  # noqa: ASYNC110
                await anyio.sleep(0.005)

    async def get_task(self, message: pb.GetTaskRequest) -> pb.Task:
        _misbehave(message.task_id)
        if message.task_id.startswith("gate"):
            await self._gate()
            return pb.Task(
                metadata=pb.Metadata(id=message.task_id),
                spec=pb.TaskSpec(session_id=str(self.gated >= IN_FLIGHT)),
            )
        return await super().get_task(message)

    async def watch_task(self, message: pb.WatchTaskRequest) -> AsyncIterator[pb.Task]:
        if message.task_id.startswith("gate"):
            await self._gate()
            yield pb.Task(metadata=pb.Metadata(id=message.task_id, name=str(self.gated)))
            return
        if message.task_id.startswith(("refuse:", "crash")):
            yield pb.Task(metadata=pb.Metadata(id=message.task_id))
            _misbehave(message.task_id)
        async for task in super().watch_task(message):
            yield task


def _misbehave(task_id: str) -> None:
    if task_id.startswith("refuse:"):
        _, status, said = task_id.split(":", 2)
        raise refuse(status, said)
    if task_id == "crash":
        raise RuntimeError("a bug in the handler")


@pytest.fixture(params=["generated", "lean"])
def frontend(request: pytest.FixtureRequest) -> Service:
    # Overrides the transport conftest's: its server and channel serve this one.
    return Service(lean=request.param == "lean")


async def _call(channel: Channel, task_id: str, session_id: str = "", **kw: Any) -> pb.Task:
    return await channel.call(
        GET_TASK, encode_task_request(task_id, session_id), pb.Task.parse, **kw
    )


async def _watch(channel: Channel, task_id: str) -> list[pb.Task]:
    request = encode_task_request(task_id, "")
    async with channel.open_stream(WATCH_TASK, request, pb.Task.parse) as updates:
        return [update async for update in updates]


async def _stub_watch(channel: Channel, stub: pb.FrontendStub, task_id: str) -> list[pb.Task]:
    async with channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id=task_id)) as updates:
        return [update async for update in updates]


# --------------------------------------------------------------------------
# Round trips


async def test_call_answers_as_the_stub_does(channel: Channel, stub: pb.FrontendStub) -> None:
    lean = await _call(channel, "7", "3")
    generated = await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="7", session_id="3"))
    assert lean == generated
    assert (lean.metadata.id, lean.spec.session_id) == ("7", "3")
    # The client's own decoder reads the same reply.
    fields = await channel.call(GET_TASK, encode_task_request("7", "3"), decode_task)
    assert fields.to_pb() == generated


async def test_open_stream_yields_what_the_stub_stream_does(
    channel: Channel, stub: pb.FrontendStub
) -> None:
    lean = await _watch(channel, "7")
    generated = await _stub_watch(channel, stub, "7")
    assert lean == generated
    assert [task.status.state for task in lean] == [
        pb.TaskState.Pending,
        pb.TaskState.Running,
        pb.TaskState.Succeed,
    ]
    async with channel.open_stream(
        WATCH_TASK, encode_task_request("7", ""), decode_task
    ) as updates:
        read = [fields.to_pb() async for fields in updates]
    assert read == generated


# --------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("task_id", "code"),
    [
        ("refuse:NOT_FOUND:task 9 is not there", FlameErrorCode.NOT_FOUND),
        ("refuse:UNKNOWN:unknown", FlameErrorCode.INVALID_STATE),
        ("refuse:FAILED_PRECONDITION:session 3 is closed", FlameErrorCode.INVALID_STATE),
        ("crash", FlameErrorCode.INTERNAL),
    ],
)
async def test_a_refused_call_fails_as_through_the_stub(
    channel: Channel, stub: pb.FrontendStub, task_id: str, code: FlameErrorCode
) -> None:
    with pytest.raises(FlameError) as lean:
        await _call(channel, task_id)
    with pytest.raises(FlameError) as generated:
        await channel.unary(stub.get_task, pb.GetTaskRequest(task_id=task_id))
    assert lean.value.code is code
    assert lean.value.message == generated.value.message
    assert "GetTask" in lean.value.message and channel.endpoint.url in lean.value.message
    if task_id.startswith("refuse:"):
        said = task_id.split(":", 2)[2]
        if said == "unknown":
            assert "without a reason" in lean.value.message
        else:
            assert said in lean.value.message


@pytest.mark.parametrize(
    ("task_id", "code"),
    [
        ("refuse:NOT_FOUND:task 9 is not there", FlameErrorCode.NOT_FOUND),
        ("refuse:UNKNOWN:unknown", FlameErrorCode.INVALID_STATE),
        ("crash", FlameErrorCode.INTERNAL),
    ],
)
async def test_a_refused_stream_fails_as_through_the_stub(
    channel: Channel, stub: pb.FrontendStub, task_id: str, code: FlameErrorCode
) -> None:
    received: list[str] = []
    with pytest.raises(FlameError) as lean:
        async with channel.open_stream(
            WATCH_TASK, encode_task_request(task_id, ""), pb.Task.parse
        ) as updates:
            async for update in updates:
                received.append(update.metadata.id)
    with pytest.raises(FlameError) as generated:
        await _stub_watch(channel, stub, task_id)
    assert received == [task_id]
    assert lean.value.code is code
    assert lean.value.message == generated.value.message
    assert "WatchTask" in lean.value.message and channel.endpoint.url in lean.value.message


async def test_an_unimplemented_method_fails_as_through_the_stub(
    channel: Channel, stub: pb.FrontendStub
) -> None:
    request = pb.DeleteTaskRequest(task_id="1")
    with pytest.raises(FlameError) as lean:
        await channel.call("/flame.Frontend/DeleteTask", bytes(request), pb.Task.parse)
    with pytest.raises(FlameError) as generated:
        await channel.unary(stub.delete_task, request)
    assert lean.value.code is FlameErrorCode.UNIMPLEMENTED
    assert lean.value.message == generated.value.message
    assert "does not implement DeleteTask" in lean.value.message
    # A path the server has no handler for at all. grpclib's server answers
    # it with trailers only and no content-type; the lean path reads the
    # grpc-status there (grpclib's own client stops at the missing
    # content-type and says UNKNOWN).
    with pytest.raises(FlameError) as missing:
        await channel.call("/flame.Frontend/NoSuchCall", b"", pb.Task.parse)
    assert missing.value.code is FlameErrorCode.UNIMPLEMENTED
    assert "does not implement NoSuchCall" in missing.value.message
    assert channel.endpoint.url in missing.value.message
    with pytest.raises(FlameError) as missing:
        await _watch_path(channel, "/flame.Frontend/NoSuchStream")
    assert missing.value.code is FlameErrorCode.UNIMPLEMENTED
    assert "NoSuchStream" in missing.value.message
    assert channel.endpoint.url in missing.value.message
    assert (await _call(channel, "after")).metadata.id == "after"


async def _watch_path(channel: Channel, path: str) -> list[Any]:
    async with channel.open_stream(path, b"", pb.Task.parse) as updates:
        return [update async for update in updates]


async def test_a_malformed_request_is_refused_and_the_server_keeps_serving(
    channel: Channel, frontend: Service
) -> None:
    garbage = b"\x0a\x05ab"  # a field that claims five bytes and has two
    # Whatever reads it (the hand-written decoders, or the generated ones that
    # serve() checks against the wire's types), the call is refused as the
    # client's mistake, not answered as a crash of the server.
    with pytest.raises(FlameError) as caught:
        await channel.call(GET_TASK, garbage, pb.Task.parse)
    assert caught.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert "GetTask" in caught.value.message
    assert "the request cannot be read" in caught.value.message
    with pytest.raises(FlameError) as caught:
        async with channel.open_stream(WATCH_TASK, garbage, pb.Task.parse) as updates:
            async for _ in updates:
                pytest.fail("a malformed watch yielded a message")
    assert caught.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert "WatchTask" in caught.value.message
    assert "the request cannot be read" in caught.value.message
    # The connection and the server are unharmed.
    assert (await _call(channel, "after")).metadata.id == "after"
    assert len(await _watch(channel, "after")) == 3


async def test_a_reply_the_decoder_refuses_is_an_error_not_a_crash(channel: Channel) -> None:
    def refuse_everything(data: bytes) -> pb.Task:
        raise ValueError("not a Task")

    with pytest.raises(FlameError) as caught:
        await channel.call(GET_TASK, encode_task_request("1", ""), refuse_everything)
    assert "GetTask" in caught.value.message
    with pytest.raises(FlameError) as caught:
        async with channel.open_stream(
            WATCH_TASK, encode_task_request("1", ""), refuse_everything
        ) as updates:
            async for _ in updates:
                pytest.fail("an unreadable message was yielded")
    assert "WatchTask" in caught.value.message
    assert (await _call(channel, "after")).metadata.id == "after"


# --------------------------------------------------------------------------
# Timeouts and cancellation


async def test_a_timed_out_call_is_timeout_and_leaves_the_caller_uncancelled(
    channel: Channel, frontend: Service, anyio_backend: str
) -> None:
    for _ in range(2):
        with pytest.raises(FlameError) as caught:
            await _call(channel, "hold", timeout=0.05)
        assert caught.value.code is FlameErrorCode.TIMEOUT
        assert "GetTask" in caught.value.message
        assert channel.endpoint.url in caught.value.message
        assert "0.05" in caught.value.message
        with pytest.raises(FlameError) as caught:
            async with channel.open_stream(
                WATCH_TASK, encode_task_request("hold", ""), pb.Task.parse, timeout=0.05
            ) as updates:
                async for _ in updates:
                    pass
        assert caught.value.code is FlameErrorCode.TIMEOUT
        assert "WatchTask" in caught.value.message
    if anyio_backend == "asyncio":
        task = asyncio.current_task()
        assert task is not None and getattr(task, "cancelling", lambda: 0)() == 0
    with anyio.move_on_after(BOUND) as scope:
        await anyio.sleep(0.01)
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 0.01)
    assert not scope.cancelled_caught
    # The server was not told the deadline of call(), yet its handler ended.
    for seen in frontend.calls:
        await wait_until(seen.ended.is_set, "the timed-out handler ending")
        assert seen.how == "cancelled"
    assert (await _call(channel, "fine")).metadata.id == "fine"


@pytest.mark.parametrize("how", ["cancel", "deadline"])
async def test_cancelling_call_ends_it_on_the_server(
    channel: Channel, frontend: Service, how: str
) -> None:
    with anyio.move_on_after(BOUND * 3) as scope:
        async with anyio.create_task_group() as tg:

            async def cancel_when_held() -> None:
                await wait_until(lambda: bool(frontend.calls), "the handler starting")
                if how == "cancel":
                    scope.cancel()
                else:
                    scope.deadline = anyio.current_time()

            tg.start_soon(cancel_when_held)
            await _call(channel, "hold")
            pytest.fail("the held call returned")
    assert scope.cancelled_caught
    seen = frontend.calls[0]
    await wait_until(seen.ended.is_set, "the server seeing the call end")
    assert seen.how == "cancelled"
    assert (await _call(channel, "after")).metadata.id == "after"


@pytest.mark.parametrize("how", ["cancel", "deadline"])
async def test_cancelling_open_stream_ends_it_on_the_server(
    channel: Channel, frontend: Service, how: str
) -> None:
    received = []
    request = encode_task_request("hold", "")
    with anyio.move_on_after(BOUND * 3) as scope:
        async with channel.open_stream(WATCH_TASK, request, pb.Task.parse) as updates:
            async for update in updates:
                received.append(update.status.state)
                # The server now holds before its second message.
                if how == "cancel":
                    scope.cancel()
                else:
                    scope.deadline = anyio.current_time()
        pytest.fail("the held stream ended")
    assert scope.cancelled_caught
    assert received == [pb.TaskState.Pending]
    seen = frontend.calls[0]
    await wait_until(seen.ended.is_set, "the server seeing the stream end")
    assert seen.how == "cancelled"
    assert len(await _watch(channel, "after")) == 3


async def _open_streams(channel: Channel) -> int:
    await anyio.lowlevel.checkpoint()
    connection = channel.pool.current
    assert connection is not None
    return len(connection.streams)


@pytest.mark.parametrize("task_id", ["hold", "flood"])
async def test_leaving_open_stream_early_resets_it_before_returning(
    channel: Channel, frontend: Service, task_id: str
) -> None:
    request = encode_task_request(task_id, "")
    async with channel.open_stream(WATCH_TASK, request, pb.Task.parse) as updates:
        count = 0
        async for _ in updates:
            count += 1
            if count == 1:
                assert await _open_streams(channel) == 1
            if task_id == "hold" or count == 20:
                break
    # Not "eventually": the connection no longer holds the stream once we are out.
    assert await _open_streams(channel) == 0
    seen = frontend.calls[0]
    await wait_until(seen.ended.is_set, "the server seeing the stream end")
    assert seen.how == "cancelled"


# --------------------------------------------------------------------------
# Many calls on one connection


async def test_more_calls_in_flight_than_h2s_default_all_get_their_answers(
    channel: Channel, frontend: Service
) -> None:
    # Each gated handler answers only once all of them are in at the same
    # time: with h2's default of 100 streams the rest would wait in the
    # client's queue, and the answers would say the gate never opened.
    answers: dict[int, tuple[str, str]] = {}

    async def one(i: int) -> None:
        task = await _call(channel, f"gate{i}", timeout=BOUND * 3)
        answers[i] = (task.metadata.id, task.spec.session_id)

    async with anyio.create_task_group() as tg:
        for i in range(IN_FLIGHT):
            tg.start_soon(one, i)
    assert answers == {i: (f"gate{i}", "True") for i in range(IN_FLIGHT)}
    assert len(frontend.calls) == IN_FLIGHT
    assert await _open_streams(channel) == 0


async def test_more_streams_open_than_h2s_default_all_get_their_messages(
    channel: Channel,
) -> None:
    received: dict[int, list[tuple[str, int]]] = {}

    async def one(i: int) -> None:
        tasks = await _watch(channel, f"gate{i}")
        received[i] = [(task.metadata.id, int(task.metadata.name)) for task in tasks]

    with anyio.fail_after(BOUND * 3):
        async with anyio.create_task_group() as tg:
            for i in range(IN_FLIGHT):
                tg.start_soon(one, i)
    assert set(received) == set(range(IN_FLIGHT))
    for i, tasks in received.items():
        assert len(tasks) == 1 and tasks[0][0] == f"gate{i}"
        assert tasks[0][1] >= IN_FLIGHT  # every stream was open at once


async def test_the_servers_settings_are_applied(channel: Channel, grpc_loop: GrpcLoop) -> None:
    # What the client sees once a call has been answered (the server's
    # SETTINGS come before any reply).
    await _call(channel, "settings")
    connection = channel.pool.current
    assert connection is not None
    assert connection.max_streams == SERVER_MAX_STREAMS

    async def kept() -> object:
        # A server connection made as grpclib's server makes one.
        edge = ServerEdge(ServerLimits(), None, max_connections=10)
        protocol = _BatchingServer([Service(lean=False)], edge)._protocol_factory()
        transport = _Recording()
        transport.get_extra_info = lambda name, default=None: default  # type: ignore[method-assign]
        protocol.connection_made(transport)
        h2_connection = getattr(protocol.connection, "_connection", None)
        closed = getattr(h2_connection, "_closed_streams", None)
        return getattr(closed, "_size_limit", None)

    limit = await grpc_loop.run(kept)
    if limit is None:
        pytest.skip("this h2 keeps no bounded record of closed streams; nothing to limit")
    assert limit == CLOSED_STREAMS_KEPT


# --------------------------------------------------------------------------
# _BatchedWrites on its own


class _Recording:
    """An asyncio transport that records what is done to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def get_extra_info(self, name: str) -> str:
        return f"info {name}"


async def test_batched_writes_send_one_turns_bytes_at_once(grpc_loop: GrpcLoop) -> None:
    async def scenario() -> list[Any]:
        seen: list[Any] = []
        raw = _Recording()
        batched = _BatchedWrites(raw)  # type: ignore[arg-type]
        batched.write(b"head")
        batched.write(b"")
        batched.write(b"body")
        batched.write(b"tail")
        seen.append(list(raw.writes))  # nothing sent within the turn
        await asyncio.sleep(0)
        seen.append(list(raw.writes))  # one send, in order
        batched.write(b"more")
        await asyncio.sleep(0)
        batched.write(b"last")
        batched.close()  # flushes what is pending before closing
        seen.append((list(raw.writes), raw.closing))
        await asyncio.sleep(0)
        seen.append(list(raw.writes))  # the scheduled flush finds nothing
        seen.append(batched.get_extra_info("peername"))

        raw = _Recording()
        batched = _BatchedWrites(raw)  # type: ignore[arg-type]
        batched.write(b"dropped")
        batched.abort()
        await asyncio.sleep(0)
        seen.append((raw.writes, raw.aborted))

        raw = _Recording()
        batched = _BatchedWrites(raw)  # type: ignore[arg-type]
        batched.write(b"late")
        raw.closing = True
        await asyncio.sleep(0)
        seen.append(raw.writes)
        return seen

    seen = await grpc_loop.run(scenario)
    assert seen == [
        [],
        [b"headbodytail"],
        ([b"headbodytail", b"more", b"last"], True),
        [b"headbodytail", b"more", b"last"],
        "info peername",
        ([], True),
        [],
    ]
