"""GrpcLoop itself: calling back into the caller's backend, and background tasks."""

from __future__ import annotations

import socket

import anyio
import anyio.abc
import pytest
import sniffio
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from transport_helpers import wait_until

from flame import FlameError, FlameErrorCode
from flame._proto.v04 import flame as pb
from flame._transport import Channel, GrpcLoop, serve


class CallingBack(pb.FrontendBase):
    """GetTask runs user code on the caller's backend through ``call_back``."""

    def __init__(self, loop: GrpcLoop) -> None:
        self.loop = loop
        self.events: list[str] = []

    async def user_code(self, task_id: str) -> str:
        self.events.append("user code started")
        try:
            if task_id == "hold":
                await anyio.sleep_forever()
            if task_id == "fail":
                raise ValueError("user code refused task 'fail'")
            await anyio.lowlevel.checkpoint()
            return sniffio.current_async_library()
        finally:
            self.events.append("user code ended")

    async def get_task(self, message: pb.GetTaskRequest) -> pb.Task:
        # This runs on the grpc loop, which is always asyncio.
        assert sniffio.current_async_library() == "asyncio"
        try:
            library = await self.loop.call_back(self.user_code, message.task_id)
        except ValueError as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, str(exc)) from None
        finally:
            self.events.append("handler ended")
        return pb.Task(metadata=pb.Metadata(id=library))


async def test_call_back_runs_user_code_on_the_callers_backend(
    grpc_loop: GrpcLoop, anyio_backend: str
) -> None:
    servicer = CallingBack(grpc_loop)
    async with (
        serve(grpc_loop, [servicer]) as server,
        await Channel.connect(server.address) as channel,
    ):
        stub = pb.FrontendStub(channel)
        task = await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="1"))
        assert task.metadata.id == anyio_backend

        with pytest.raises(FlameError) as caught:
            await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="fail"))
        assert caught.value.code is FlameErrorCode.INVALID_ARGUMENT
        assert "user code refused task 'fail'" in caught.value.message


async def test_cancelling_the_call_cancels_the_called_back_code_first(grpc_loop: GrpcLoop) -> None:
    servicer = CallingBack(grpc_loop)
    async with (
        serve(grpc_loop, [servicer]) as server,
        await Channel.connect(server.address) as channel,
    ):
        stub = pb.FrontendStub(channel)
        with anyio.move_on_after(30) as scope:
            async with anyio.create_task_group() as tg:

                async def cancel_when_held() -> None:
                    await wait_until(lambda: bool(servicer.events), "the user code starting")
                    scope.cancel()

                tg.start_soon(cancel_when_held)
                await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="hold"))
        assert scope.cancelled_caught
        await wait_until(lambda: "handler ended" in servicer.events, "the handler ending")
    # The handler waited for the user code to end before it ended itself.
    assert servicer.events == ["user code started", "user code ended", "handler ended"]


async def _fails_at_start(*, task_status: anyio.abc.TaskStatus[None]) -> None:
    await anyio.lowlevel.checkpoint()
    raise FlameError(FlameErrorCode.INVALID_CONFIG, "cannot start: no such thing")


async def _fails_later(*, task_status: anyio.abc.TaskStatus[str]) -> None:
    task_status.started("up")
    await anyio.sleep(0.05)
    raise KeyError("gone")


async def test_background_raises_a_startup_failure_as_is(grpc_loop: GrpcLoop) -> None:
    with pytest.raises(FlameError) as caught:
        async with grpc_loop.background(_fails_at_start):
            pytest.fail("entered a background task that failed to start")
    assert caught.value.code is FlameErrorCode.INVALID_CONFIG
    assert caught.value.message == "cannot start: no such thing"


async def test_background_failing_later_cancels_the_body_and_raises(grpc_loop: GrpcLoop) -> None:
    with pytest.raises(KeyError):
        async with grpc_loop.background(_fails_later) as value:
            assert value == "up"
            await anyio.sleep(30)
            pytest.fail("the body outlived a failed background task")


async def test_background_is_cancelled_on_leaving(grpc_loop: GrpcLoop) -> None:
    ended: list[str] = []

    async def forever(*, task_status: anyio.abc.TaskStatus[int]) -> None:
        task_status.started(42)
        try:
            await anyio.sleep_forever()
        finally:
            ended.append(sniffio.current_async_library())

    async with grpc_loop.background(forever) as value:
        assert value == 42
        assert ended == []
    assert ended == ["asyncio"]


async def test_serving_on_a_taken_port_is_invalid_config(grpc_loop: GrpcLoop) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(FlameError) as caught:
            async with serve(grpc_loop, [pb.FrontendBase()], port=port):
                pytest.fail("served on a taken port")
    assert caught.value.code is FlameErrorCode.INVALID_CONFIG
    assert f"127.0.0.1:{port}" in caught.value.message


async def test_run_after_close_is_refused(anyio_backend: str) -> None:
    from flame._transport import open_grpc_loop

    loop = open_grpc_loop()

    async def answer() -> int:
        return 42

    assert await loop.run(answer) == 42
    await loop.aclose()
    await loop.aclose()  # idempotent
    if anyio_backend == "trio":
        with pytest.raises(FlameError) as caught:
            await loop.run(answer)
        assert caught.value.code is FlameErrorCode.INVALID_STATE


async def test_a_result_that_beat_the_cancellation_is_returned(
    grpc_loop: GrpcLoop, anyio_backend: str
) -> None:
    # The function cancels the caller and returns at once, so the result is
    # there before the cancellation reaches the grpc loop: the caller gets
    # it (nothing that happened is lost) and is cancelled at its next
    # checkpoint.
    got: list[int] = []
    with anyio.CancelScope() as scope:
        if anyio_backend == "trio":
            import trio

            token = trio.lowlevel.current_trio_token()

            async def cancel_and_answer() -> int:
                token.run_sync_soon(scope.cancel)
                return 42
        else:

            async def cancel_and_answer() -> int:
                scope.cancel()
                return 42

        got.append(await grpc_loop.run(cancel_and_answer))
        await anyio.lowlevel.checkpoint()
        pytest.fail("the cancellation was lost")
    assert scope.cancelled_caught
    assert got == [42]


async def test_a_call_cancelled_while_it_runs_raises_cancelled(grpc_loop: GrpcLoop) -> None:
    ended: list[str] = []

    async def held() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            ended.append(sniffio.current_async_library())

    with anyio.move_on_after(0.1) as scope:
        await grpc_loop.run(held)
    assert scope.cancelled_caught
    # The caller resumed only once the function had really ended.
    assert ended == ["asyncio"]
