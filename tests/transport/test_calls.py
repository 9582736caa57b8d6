"""Unary and streaming calls, timeouts, and cancellation seen from the server."""

from __future__ import annotations

from typing import Any

import anyio
import grpclib.const
import pytest
from transport_helpers import BOUND, Frontend, wait_until

from flame import FlameError, FlameErrorCode
from flame._proto.v04 import flame as pb
from flame._transport import Channel, GrpcLoop, Server, serve


async def test_unary_call_returns_the_answer(channel: Channel, stub: pb.FrontendStub) -> None:
    task = await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="7", session_id="3"))
    assert (task.metadata.id, task.spec.session_id) == ("7", "3")


async def test_many_unary_calls_in_flight_each_get_their_own_answer(
    channel: Channel, stub: pb.FrontendStub
) -> None:
    answers: dict[int, str] = {}

    async def one(i: int) -> None:
        task = await channel.unary(stub.get_task, pb.GetTaskRequest(task_id=str(i)))
        answers[i] = task.metadata.id

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(one, i)
    assert answers == {i: str(i) for i in range(50)}


async def test_stream_yields_every_message_then_ends(
    channel: Channel, stub: pb.FrontendStub
) -> None:
    async with channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="7")) as updates:
        states = [update.status.state async for update in updates]
    assert states == [pb.TaskState.Pending, pb.TaskState.Running, pb.TaskState.Succeed]


async def test_unary_timeout_names_the_call_and_endpoint(
    channel: Channel, stub: pb.FrontendStub, frontend: Frontend
) -> None:
    with pytest.raises(FlameError) as caught:
        await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="hold"), timeout=0.2)
    assert caught.value.code is FlameErrorCode.TIMEOUT
    assert "GetTask" in caught.value.message
    assert channel.endpoint.url in caught.value.message
    assert "0.2" in caught.value.message
    # The server saw the call end too.
    await wait_until(lambda: frontend.calls[0].ended.is_set(), "the held handler ending")


async def test_stream_timeout_names_the_call_and_endpoint(
    channel: Channel, stub: pb.FrontendStub
) -> None:
    received = []
    with pytest.raises(FlameError) as caught:
        async with channel.stream(
            stub.watch_task, pb.WatchTaskRequest(task_id="hold"), timeout=0.3
        ) as updates:
            async for update in updates:
                received.append(update.status.state)
    assert received == [pb.TaskState.Pending]
    assert caught.value.code is FlameErrorCode.TIMEOUT
    assert "WatchTask" in caught.value.message
    assert channel.endpoint.url in caught.value.message


@pytest.mark.parametrize("how", ["cancel", "deadline"])
async def test_cancelling_a_unary_call_ends_it_on_the_server(
    channel: Channel, stub: pb.FrontendStub, frontend: Frontend, how: str
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
            await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="hold"))
            pytest.fail("the held call returned")
    assert scope.cancelled_caught
    seen = frontend.calls[0]
    await wait_until(seen.ended.is_set, "the server seeing the call end")
    assert seen.how == "cancelled"
    # The channel still works after a cancelled call.
    task = await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="after"))
    assert task.metadata.id == "after"


@pytest.mark.parametrize("how", ["cancel", "deadline"])
async def test_cancelling_a_stream_ends_it_on_the_server(
    channel: Channel, stub: pb.FrontendStub, frontend: Frontend, how: str
) -> None:
    received = []
    with anyio.move_on_after(BOUND * 3) as scope:
        async with channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="hold")) as updates:
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
    async with channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="x")) as updates:
        assert len([u async for u in updates]) == 3


async def test_leaving_a_stream_early_ends_it_on_the_server(
    channel: Channel, stub: pb.FrontendStub, frontend: Frontend
) -> None:
    async with channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="hold")) as updates:
        async for update in updates:
            assert update.status.state is pb.TaskState.Pending
            break
    seen = frontend.calls[0]
    await wait_until(seen.ended.is_set, "the server seeing the stream end")
    assert seen.how == "cancelled"


async def test_leaving_a_flooding_stream_ends_it_on_the_server(
    channel: Channel, stub: pb.FrontendStub, frontend: Frontend
) -> None:
    # The server sends without end, so whatever carries messages to us is
    # full and blocked when we leave: leaving must still end the call.
    async with channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="flood")) as updates:
        count = 0
        async for _ in updates:
            count += 1
            if count == 1:
                await wait_until(lambda: frontend.flooded > 50, "the server filling the pipe")
            if count == 20:
                break
    seen = frontend.calls[0]
    await wait_until(seen.ended.is_set, "the server seeing the stream end")
    assert seen.how == "cancelled"


async def test_two_streams_and_calls_interleave(channel: Channel, stub: pb.FrontendStub) -> None:
    async with (
        channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="a")) as first,
        channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="b")) as second,
    ):
        a = await first.__anext__()
        b = await second.__anext__()
        middle = await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="m"))
        rest_a = [u.metadata.id async for u in first]
        rest_b = [u.metadata.id async for u in second]
    assert (a.metadata.id, b.metadata.id, middle.metadata.id) == ("a", "b", "m")
    assert (rest_a, rest_b) == (["a", "a"], ["b", "b"])


async def test_a_closed_channel_refuses_calls(server: Server[object]) -> None:
    channel = await Channel.connect(server.address)
    stub = pb.FrontendStub(channel)
    await channel.aclose()
    await channel.aclose()  # idempotent
    with pytest.raises(FlameError) as caught:
        await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="1"))
    assert caught.value.code is FlameErrorCode.INVALID_STATE
    assert "GetTask" in caught.value.message and server.address in caught.value.message
    assert caught.value.message.endswith("the connection is closed; connect again")
    with pytest.raises(FlameError) as caught:
        async with channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="1")):
            pass
    assert caught.value.code is FlameErrorCode.INVALID_STATE


async def test_closing_with_calls_in_flight_fails_them_cleanly(
    server: Server[object], frontend: Frontend
) -> None:
    channel = await Channel.connect(server.address)
    stub = pb.FrontendStub(channel)
    failures: list[FlameError] = []

    async def held_call() -> None:
        try:
            await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="hold"))
        except FlameError as exc:
            failures.append(exc)

    async def held_stream() -> None:
        try:
            async with channel.stream(
                stub.watch_task, pb.WatchTaskRequest(task_id="hold")
            ) as updates:
                async for _ in updates:
                    pass
        except FlameError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(held_call)
        tg.start_soon(held_stream)
        await wait_until(lambda: len(frontend.calls) == 2, "both calls reaching the server")
        await channel.aclose()
    assert sorted(f.code.name for f in failures) == ["UNAVAILABLE", "UNAVAILABLE"]
    for seen in frontend.calls:
        await wait_until(seen.ended.is_set, "the server seeing the call end")


@pytest.mark.parametrize("how", ["break", "cancel"])
async def test_leaving_a_stream_resets_it_before_returning(
    channel: Channel, stub: pb.FrontendStub, how: str
) -> None:
    # Not "eventually", when some generator is collected: by the time the
    # `async with` is left, the connection no longer holds the stream.
    def open_streams() -> int:
        connection = channel.pool.current
        assert connection is not None
        return len(connection.streams)

    with anyio.CancelScope() as scope:
        async with channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="hold")) as updates:
            async for _ in updates:
                assert open_streams() == 1
                if how == "break":
                    break
                scope.cancel()
                await anyio.lowlevel.checkpoint()
    assert open_streams() == 0


async def test_a_timed_out_call_leaves_the_callers_task_uncancelled(
    channel: Channel, stub: pb.FrontendStub, anyio_backend: str
) -> None:
    # A deadline enforced by cancelling the waiting task must withdraw that
    # request, or the caller's next cancel scope (or asyncio.timeout, or
    # TaskGroup) would take it for its own.
    for _ in range(2):
        with pytest.raises(FlameError):
            await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="hold"), timeout=0.05)
        with pytest.raises(FlameError):
            async with channel.stream(
                stub.watch_task, pb.WatchTaskRequest(task_id="hold"), timeout=0.05
            ) as updates:
                async for _ in updates:
                    pass
    if anyio_backend == "asyncio":
        import asyncio

        task = asyncio.current_task()
        assert task is not None and getattr(task, "cancelling", lambda: 0)() == 0
    with anyio.move_on_after(BOUND) as scope:
        await anyio.sleep(0.01)
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 0.01)
    assert not scope.cancelled_caught
    task = await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="fine"))
    assert task.metadata.id == "fine"


class DeadlineSeen(pb.FrontendBase):
    """GetTask answers with how long the server's deadline for it had left."""

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        mapping = super().__mapping__()
        handler = mapping["/flame.Frontend/GetTask"]

        async def handle(stream: Any) -> None:
            request = await stream.recv_message()
            left = None if stream.deadline is None else stream.deadline.time_remaining()
            await stream.send_message(
                pb.Task(metadata=pb.Metadata(id=repr(left), name=request.task_id))
            )

        mapping["/flame.Frontend/GetTask"] = handler._replace(func=handle)
        return mapping


async def test_the_server_holds_the_call_to_its_deadline(grpc_loop: GrpcLoop) -> None:
    async with (
        serve(grpc_loop, [DeadlineSeen()]) as server,
        await Channel.connect(server.address) as channel,
    ):
        stub = pb.FrontendStub(channel)
        with_timeout = await channel.unary(stub.get_task, pb.GetTaskRequest(), timeout=30)
        without = await channel.unary(stub.get_task, pb.GetTaskRequest())
    left = float(with_timeout.metadata.id)
    assert 0 < left <= 30.002
    assert without.metadata.id == "None"


@pytest.mark.parametrize("kind", ["STREAM_UNARY", "STREAM_STREAM"])
async def test_a_stub_call_streaming_requests_is_refused_clearly(
    channel: Channel, kind: str
) -> None:
    with pytest.raises(FlameError) as caught:
        channel.request(
            "/flame.Frontend/Upload",
            grpclib.const.Cardinality[kind],
            pb.GetTaskRequest,
            pb.Task,
        )
    assert caught.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert f"Upload on {channel.endpoint} is a {kind} call" in caught.value.message
    assert "unary and server-streaming calls only" in caught.value.message


async def test_a_stub_call_with_metadata_is_refused_clearly(
    channel: Channel, stub: pb.FrontendStub
) -> None:
    with pytest.raises(FlameError) as caught:
        await stub.get_task(pb.GetTaskRequest(), metadata={"x-user": "me"})
    assert caught.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert "metadata" in caught.value.message and "GetTask" in caught.value.message
