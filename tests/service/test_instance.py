"""Real service processes run through the Instance contract of Flame v0.5 and v0.6.

The executor is the test's own (``_executor.py``), doing what the wire page
says a v0.5 or v0.6 executor does; the service is ``_services.py`` run by
``flame.service.run``, under the backend of the test.
"""

from __future__ import annotations

import importlib
import json
import math
import pathlib
import sys

import anyio
import pytest

from flame import FlameError, FlameErrorCode
from flame._transport import Channel
from flame.functions._envelope import Returned, decode_reply, encode_call, encode_function
from flame.service._contracts._instance import InstanceWire

from ._executor import instance_executor, service_argv

WIRES: list[InstanceWire] = ["v0.5", "v0.6"]
PACKAGES = {"v0.5": "flame._proto.v05.flame", "v0.6": "flame._proto.v06.flame.v1"}


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("mode", ["echo", "async"])
async def test_a_service_runs_a_session_and_a_failed_task_carries_its_text(
    wire: InstanceWire, mode: str, anyio_backend: str, tmp_path: pathlib.Path
) -> None:
    async with instance_executor(wire, tmp_path, service_argv(mode, anyio_backend)) as bound:
        service = bound.client
        pb = service.pb
        app = pb.ApplicationContext(name="echo", shim=pb.Shim.Host, command=sys.executable)
        entered = await service.enter(
            pb.SessionContext(session_id="7", application=app, common_data=b"common")
        )
        hello = await service.invoke(pb.TaskContext(task_id="1", session_id="7", input=b"hello"))
        empty = await service.invoke(pb.TaskContext(task_id="2", session_id="7"))
        failed = await service.invoke(pb.TaskContext(task_id="3", session_id="7", input=b"fail"))
        after = await service.invoke(pb.TaskContext(task_id="4", session_id="7", input=b"after"))
        left = await service.leave()
    # The replies are the wire's own messages.
    assert type(hello).__module__ == PACKAGES[wire]
    assert (entered.return_code, left.return_code) == (0, 0)
    assert (hello.return_code, hello.output) == (0, b"hello")
    assert (empty.return_code, empty.output) == (0, None)
    # A handler exception fails the task, not the call: a v0.5 executor would
    # make a failed call again, forever.
    assert failed.return_code != 0
    assert failed.message == "ValueError: the task asked to fail"
    assert failed.output is None
    assert (after.return_code, after.output) == (0, b"after")
    # Unbinding's SIGTERM stopped the service gracefully.
    assert bound.process.returncode == 0
    assert bound.output_lines() == [
        "enter 7 echo",
        "task 1 hello",
        "task 2 ",
        "task 3 fail",
        "task 4 after",
        "leave",
        "stopped",
    ]


@pytest.mark.parametrize("wire", WIRES)
async def test_a_session_that_cannot_be_entered_fails_with_its_text(
    wire: InstanceWire, anyio_backend: str, tmp_path: pathlib.Path
) -> None:
    async with instance_executor(wire, tmp_path, service_argv("async", anyio_backend)) as bound:
        service = bound.client
        pb = service.pb
        refused = await service.enter(
            pb.SessionContext(
                session_id="1", application=pb.ApplicationContext(name="a"), common_data=b"refuse"
            )
        )
        # The executor leaves anyway (it does on v0.6): a task in between fails
        # with a reply, not a gRPC error.
        task = await service.invoke(pb.TaskContext(task_id="1", session_id="1", input=b"x"))
        left = await service.leave()
    assert refused.return_code != 0
    assert refused.message == "RuntimeError: the session asked to be refused"
    assert task.return_code != 0
    assert "no session is entered; call OnSessionEnter first" in task.message
    assert left.return_code == 0
    # Never entered, so never left: on_session_leave is not called.
    assert "leave" not in bound.output_lines()


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("mode", ["echo", "async"])
async def test_sigterm_lets_the_task_in_hand_finish(
    wire: InstanceWire, mode: str, anyio_backend: str, tmp_path: pathlib.Path
) -> None:
    async with instance_executor(wire, tmp_path, service_argv(mode, anyio_backend)) as bound:
        service = bound.client
        pb = service.pb
        await service.enter(pb.SessionContext(session_id="1"))
        result = None

        async def invoke() -> None:
            nonlocal result
            task = pb.TaskContext(task_id="1", session_id="1", input=b"sleep 1")
            result = await service.invoke(task)

        async with anyio.create_task_group() as tg:
            tg.start_soon(invoke)
            await bound.wait_for_line("task 1 started")
            bound.terminate()
        with anyio.fail_after(30):
            code = await bound.process.wait()
    assert result is not None
    assert (result.return_code, result.output) == (0, b"slept")
    assert code == 0
    assert bound.output_lines()[-2:] == ["leave", "stopped"]


async def test_the_v06_context_carries_the_application_and_the_cluster(
    anyio_backend: str, tmp_path: pathlib.Path
) -> None:
    cluster = {"FLAME_ENDPOINT": "https://flame:8080", "FLAME_CA_FILE": "/etc/flame/ca.pem"}
    async with instance_executor(
        "v0.6", tmp_path, service_argv("echo", anyio_backend), environment=cluster
    ) as bound:
        pb = bound.client.pb
        app = pb.ApplicationContext(
            name="app",
            shim=pb.Shim.Host,
            image="img:1",
            command="/bin/app",
            working_directory="/srv",
            url="file:///pkg.whl",
            installer="python",
        )
        await bound.client.enter(pb.SessionContext(session_id="3", application=app))
        reply = await bound.client.invoke(
            pb.TaskContext(task_id="1", session_id="3", input=b"context")
        )
    context = json.loads(reply.output)
    assert context["endpoint"] == "https://flame:8080"
    assert context["ca_file"] == "/etc/flame/ca.pem"
    assert context["application"] == {
        "name": "app",
        "shim": "GRPC",
        "url": "file:///pkg.whl",
        "command": "/bin/app",
        "image": "img:1",
        "working_directory": "/srv",
        "installer": "python",
    }


async def test_the_v05_context_has_no_url_installer_or_cluster(
    anyio_backend: str, tmp_path: pathlib.Path
) -> None:
    async with instance_executor("v0.5", tmp_path, service_argv("echo", anyio_backend)) as bound:
        pb = bound.client.pb
        app = pb.ApplicationContext(name="app", shim=pb.Shim.Wasm, image="img:1")
        await bound.client.enter(pb.SessionContext(session_id="3", application=app))
        reply = await bound.client.invoke(
            pb.TaskContext(task_id="1", session_id="3", input=b"context")
        )
    context = json.loads(reply.output)
    assert (context["endpoint"], context["ca_file"]) == (None, None)
    application = context["application"]
    assert (application["shim"], application["image"]) == ("WASM", "img:1")
    assert (application["url"], application["installer"]) == (None, None)


@pytest.mark.parametrize("wire", WIRES)
async def test_a_request_of_the_wrong_types_is_refused_at_the_edge(
    wire: InstanceWire, anyio_backend: str, tmp_path: pathlib.Path
) -> None:
    async with instance_executor(wire, tmp_path, service_argv("echo", anyio_backend)) as bound:
        path = (
            "/flame.v1.Instance/OnSessionEnter"
            if wire == "v0.6"
            else "/flame.Instance/OnSessionEnter"
        )
        # SessionContext.session_id (field 1) sent as a varint, not a string.
        async with await Channel.connect(f"unix:{bound.socket}") as channel:
            with pytest.raises(FlameError) as refused:
                await channel.call(path, b"\x08\x07", bound.client.pb.Result.parse)
        # The client refuses the other wire's message before sending it.
        other = importlib.import_module(PACKAGES["v0.5" if wire == "v0.6" else "v0.6"])
        with pytest.raises(FlameError) as mixed:
            await bound.client.enter(other.SessionContext(session_id="1"))
        # The service still answers a good one.
        entered = await bound.client.enter(bound.client.pb.SessionContext(session_id="1"))
    assert refused.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert "SessionContext.session_id should be" in refused.value.message
    assert mixed.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert f"a {wire} service takes a {PACKAGES[wire]}.SessionContext" in mixed.value.message
    assert entered.return_code == 0


@pytest.mark.parametrize("wire", WIRES)
async def test_the_functions_service_runs_under_the_instance_contract(
    wire: InstanceWire, anyio_backend: str, tmp_path: pathlib.Path
) -> None:
    argv = [sys.executable, "-m", "flame.functions", "--backend", anyio_backend]
    async with instance_executor(wire, tmp_path, argv) as bound:
        pb = bound.client.pb
        function = encode_function(math.hypot, "math.hypot")
        entered = await bound.client.enter(
            pb.SessionContext(
                session_id="1", application=pb.ApplicationContext(name="fn"), common_data=function
            )
        )
        call = encode_call(1, (3.0, 4.0), {}, "the arguments")
        reply = await bound.client.invoke(pb.TaskContext(task_id="1", session_id="1", input=call))
    assert entered.return_code == 0
    assert reply.return_code == 0
    returned = decode_reply(reply.output)
    assert isinstance(returned, Returned)
    assert (returned.index, returned.value()) == (1, 5.0)
