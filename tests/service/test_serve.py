"""flame.service.serve driven directly by a fake executor, without the cluster."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest
import sniffio

from flame import FlameError, FlameErrorCode
from flame._proto.v04 import flame as pb
from flame._transport import Channel
from flame.service import FlameService, SessionContext, TaskContext, TaskOutput, serve

from ._fake_manager import fake_manager


class Recorder(FlameService):
    """Plain handlers: echo the input, remember what happened and where."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.threads: set[int] = set()

    def on_session_enter(self, ctx: SessionContext) -> None:
        self.threads.add(threading.get_ident())
        app = ctx.application
        self.events.append(f"enter {ctx.session_id} {app.name} {app.shim.name} {ctx.common_data!r}")

    def on_task_invoke(self, ctx: TaskContext) -> bytes | None:
        self.threads.add(threading.get_ident())
        self.events.append(f"task {ctx.task_id}")
        if ctx.input == b"fail":
            raise ValueError("the input says fail")
        if ctx.input == b"text":
            return "not bytes"  # type: ignore[return-value]
        if ctx.input == b"output":
            return TaskOutput(data=b"wrapped")  # type: ignore[return-value]
        return ctx.input

    def on_session_leave(self) -> None:
        self.events.append("leave")


class AsyncRecorder(FlameService):
    """Async handlers: they must run on the backend that called serve()."""

    def __init__(self) -> None:
        self.libraries: list[str] = []

    async def on_session_enter(self, ctx: SessionContext) -> None:
        self.libraries.append(sniffio.current_async_library())

    async def on_task_invoke(self, ctx: TaskContext) -> TaskOutput:
        self.libraries.append(sniffio.current_async_library())
        await anyio.lowlevel.checkpoint()
        return TaskOutput(data=(ctx.input or b"").upper())

    async def on_session_leave(self) -> None:
        self.libraries.append(sniffio.current_async_library())


@contextlib.asynccontextmanager
async def running(
    service: FlameService, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Channel, pb.GrpcShimStub, pb.RegisterServiceRequest]]:
    """Serve ``service`` against a fake manager; give a channel to its GrpcShim."""
    async with fake_manager() as (manager, address):
        monkeypatch.setenv("FLAME_SERVICE_MANAGER", address)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve(service, handle_signals=False))
            with anyio.fail_after(30):
                await manager.registered.wait()
            registration = manager.registrations[0]
            async with await Channel.connect(registration.address) as channel:
                yield channel, pb.GrpcShimStub(channel), registration
            tg.cancel_scope.cancel()


def session_context(session_id: str = "1") -> pb.SessionContext:
    return pb.SessionContext(
        session_id=session_id,
        application=pb.ApplicationContext(name="echo", shim=pb.Shim.Grpc),
        common_data=b"common",
    )


async def test_registers_and_answers_a_session(monkeypatch: pytest.MonkeyPatch) -> None:
    service = Recorder()
    async with running(service, monkeypatch) as (channel, stub, registration):
        assert registration.service_id == str(os.getpid())
        assert registration.address.startswith("http://127.0.0.1:")
        result = await channel.unary(stub.on_session_enter, session_context("7"))
        assert result.return_code == 0
        first = await channel.unary(
            stub.on_task_invoke, pb.TaskContext(task_id="1", session_id="7", input=b"hello")
        )
        empty = await channel.unary(
            stub.on_task_invoke, pb.TaskContext(task_id="2", session_id="7")
        )
        wrapped = await channel.unary(
            stub.on_task_invoke, pb.TaskContext(task_id="3", session_id="7", input=b"output")
        )
        await channel.unary(stub.on_session_leave, pb.EmptyRequest())
    assert (first.data, empty.data, wrapped.data) == (b"hello", None, b"wrapped")
    assert service.events == ["enter 7 echo GRPC b'common'", "task 1", "task 2", "task 3", "leave"]
    # Plain handlers ran in worker threads, never on the thread of the event loop.
    assert threading.get_ident() not in service.threads


async def registration_metadata(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The metadata the service's registration carried."""
    async with fake_manager() as (manager, address):
        monkeypatch.setenv("FLAME_SERVICE_MANAGER", address)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve(Recorder(), handle_signals=False))
            with anyio.fail_after(30):
                await manager.registered.wait()
            tg.cancel_scope.cancel()
    return manager.metadata[0]


async def test_the_registration_carries_the_token_the_executor_gave(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLAME_SERVICE_TOKEN", "the-secret")
    metadata = await registration_metadata(monkeypatch)
    assert metadata["flame-service-token"] == "the-secret"


async def test_without_a_token_the_registration_carries_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a v0.4 executor gives: no secret (and it reads no header).
    monkeypatch.delenv("FLAME_SERVICE_TOKEN", raising=False)
    metadata = await registration_metadata(monkeypatch)
    assert "flame-service-token" not in metadata


async def test_async_handlers_run_on_the_callers_backend(
    monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    service = AsyncRecorder()
    async with running(service, monkeypatch) as (channel, stub, _):
        await channel.unary(stub.on_session_enter, session_context())
        output = await channel.unary(
            stub.on_task_invoke, pb.TaskContext(task_id="1", session_id="1", input=b"abc")
        )
        await channel.unary(stub.on_session_leave, pb.EmptyRequest())
    assert output.data == b"ABC"
    assert service.libraries == [anyio_backend] * 3


async def test_a_handler_exception_fails_the_call_with_its_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = Recorder()
    async with running(service, monkeypatch) as (channel, stub, _):
        await channel.unary(stub.on_session_enter, session_context())
        with pytest.raises(FlameError) as failed:
            await channel.unary(
                stub.on_task_invoke, pb.TaskContext(task_id="1", session_id="1", input=b"fail")
            )
        # The service goes on answering after a failed task.
        after = await channel.unary(
            stub.on_task_invoke, pb.TaskContext(task_id="2", session_id="1", input=b"ok")
        )
    assert "ValueError: the input says fail" in failed.value.message
    assert after.data == b"ok"


async def test_a_wrong_return_type_says_what_to_return(monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(Recorder(), monkeypatch) as (channel, stub, _):
        await channel.unary(stub.on_session_enter, session_context())
        with pytest.raises(FlameError) as failed:
            await channel.unary(
                stub.on_task_invoke, pb.TaskContext(task_id="1", session_id="1", input=b"text")
            )
    assert "returned str; return bytes, a TaskOutput, or None" in failed.value.message


async def test_calls_out_of_order_are_refused_and_change_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = Recorder()
    async with running(service, monkeypatch) as (channel, stub, _):
        with pytest.raises(FlameError) as no_session:
            await channel.unary(stub.on_task_invoke, pb.TaskContext(task_id="1", session_id="1"))
        await channel.unary(stub.on_session_enter, session_context("1"))
        with pytest.raises(FlameError) as twice:
            await channel.unary(stub.on_session_enter, session_context("2"))
        output = await channel.unary(
            stub.on_task_invoke, pb.TaskContext(task_id="1", session_id="1", input=b"x")
        )
    assert no_session.value.code is FlameErrorCode.INVALID_STATE
    assert "call OnSessionEnter first" in no_session.value.message
    assert twice.value.code is FlameErrorCode.INVALID_STATE
    assert "still bound to session 1" in twice.value.message
    assert output.data == b"x"
    assert service.events == ["enter 1 echo GRPC b'common'", "task 1"]


async def test_without_a_manager_it_says_how_a_service_is_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("FLAME_SERVICE_MANAGER", "FLAME_INSTANCE_ENDPOINT", "FLAME_EXECUTOR_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(FlameError) as missing:
        await serve(Recorder(), handle_signals=False)
    assert missing.value.code is FlameErrorCode.INVALID_CONFIG
    message = missing.value.message
    assert message.startswith("no Flame executor started this service")
    # Which variable each Flame version's executor sets, and how to run it.
    assert "FLAME_INSTANCE_ENDPOINT (Flame v0.6)" in message
    assert "FLAME_EXECUTOR_ID (Flame v0.5)" in message
    assert "FLAME_SERVICE_MANAGER (Flame v0.4, and `flame local`)" in message
    assert "create a session of it" in message


async def test_an_unreachable_manager_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # A port that was free a moment ago: nothing listens there.
    with anyio.fail_after(30):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()
        monkeypatch.setenv("FLAME_SERVICE_MANAGER", f"http://127.0.0.1:{port}")
        with pytest.raises(FlameError) as unreachable:
            await serve(Recorder(), handle_signals=False)
    assert unreachable.value.code is FlameErrorCode.UNAVAILABLE
