"""The Grpc shim takes only the registration of the child it started: it carries its secret."""

from __future__ import annotations

import logging
import pathlib
import sys
from collections.abc import AsyncIterator

import anyio
import pytest

import flame
from flame import ApplicationAttributes, FlameError, FlameErrorCode, Shim, TaskState
from flame._proto.v04 import flame as pb
from flame._transport import Channel, GrpcLoop, open_grpc_loop, serve
from flame.local import LocalCluster
from flame.local.shims.grpc import _Manager

SERVICES = str(pathlib.Path(__file__).with_name("_services.py"))


async def _make_manager(token: str) -> _Manager:
    # Made on the grpc loop, where its handler sets its event.
    return _Manager(anyio.Event(), token)


@pytest.fixture
async def grpc_loop() -> AsyncIterator[GrpcLoop]:
    loop = open_grpc_loop()
    try:
        yield loop
    finally:
        await loop.aclose()


async def register(address: str, service_id: str, token: str | None) -> None:
    headers = [("flame-service-token", token)] if token is not None else []
    async with await Channel.connect(address, headers=headers) as channel:
        stub = pb.GrpcServiceManagerStub(channel)
        request = pb.RegisterServiceRequest(address="http://127.0.0.1:9", service_id=service_id)
        await channel.unary(stub.register_service, request)


@pytest.mark.parametrize("token", [None, "", "a-guess", "the-secret-and-more"])
async def test_a_registration_without_the_secret_is_refused(
    grpc_loop: GrpcLoop, token: str | None
) -> None:
    manager = await grpc_loop.run(_make_manager, "the-secret")
    async with serve(grpc_loop, [manager]) as server:
        with pytest.raises(FlameError) as refused:
            await register(server.address, "42", token)
        await register(server.address, "42", "the-secret")
    assert refused.value.code is FlameErrorCode.INVALID_CONFIG
    assert "failed: PERMISSION_DENIED: registration refused" in refused.value.message
    assert "only the service this executor started may register" in refused.value.message
    assert manager.refused == ["42"]
    assert manager.addresses == {"42": "http://127.0.0.1:9"}


async def test_another_process_cannot_take_the_childs_place(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="flame.local.shims.grpc")
    app = ApplicationAttributes(
        shim=Shim.GRPC, command=sys.executable, arguments=[SERVICES, "rogue"]
    )
    async with LocalCluster(slots=1) as cluster, await flame.connect(cluster.endpoint) as conn:
        await conn.register_application("target", app)
        async with await conn.create_session({"application": "target"}) as session:
            task = await session.run_task(b"pid")
    # The child started a process that registered under the child's pid,
    # without the secret, before the child itself registered: it was refused.
    assert task.state is TaskState.SUCCEED
    pid = (task.output or b"").decode()
    lines = [record.getMessage() for record in caplog.records]
    rogue = [line for line in lines if "rogue registering as" in line]
    assert len(rogue) == 1
    assert f"rogue registering as {pid}: refused: RegisterService" in rogue[0]
    assert "PERMISSION_DENIED" in rogue[0]
    assert any(f"refused a registration of service_id '{pid}'" in line for line in lines)
    # The session's task ran in the child the executor started.
    assert any(line.startswith(f"target[{pid}] stdout: task 1 pid") for line in lines)
