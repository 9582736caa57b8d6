"""Real service processes run through the embedded cluster's Grpc shim."""

from __future__ import annotations

import logging
import os
import pathlib
import signal
import sys
from collections.abc import AsyncIterator

import anyio
import psutil
import pytest

import flame
from flame import ApplicationAttributes, Shim, Task, TaskState
from flame._proto.v04 import flame as pb
from flame._transport import Channel
from flame.local import LocalCluster
from flame.local._executors import MAX_RESTARTS

from ._fake_manager import fake_manager

SERVICES = str(pathlib.Path(__file__).with_name("_services.py"))


def service_app(*arguments: str, **environments: str) -> ApplicationAttributes:
    return ApplicationAttributes(
        shim=Shim.GRPC,
        command=sys.executable,
        arguments=[SERVICES, *arguments],
        environments=dict(environments),  # type: ignore[arg-type]
    )


@pytest.fixture
async def connection() -> AsyncIterator[flame.Connection]:
    async with LocalCluster(slots=2) as cluster, await flame.connect(cluster.endpoint) as conn:
        yield conn


async def finish(session: flame.Session, data: bytes) -> Task:
    """Create a task and watch it to its end; a failed task is returned, not raised."""
    created = await session.create_task(data)
    last = created
    async with session.watch_task(created.id) as updates:
        async for update in updates:
            last = update
    return last


async def test_a_service_runs_a_session(
    connection: flame.Connection, anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flame.local.shims.grpc")
    # The service itself runs under the backend of the test.
    await connection.register_application("echo", service_app("async", anyio_backend))
    async with await connection.create_session({"application": "echo"}) as session:
        first = await session.run_task(b"hello")
        second = await session.run_task(b"again")
    assert (first.state, first.output) == (TaskState.SUCCEED, b"hello")
    assert second.output == b"again"
    lines = [record.getMessage() for record in caplog.records]
    # The child's output reaches the cluster's log with application and pid.
    assert any(line.startswith("echo[") and "stdout: enter 1 echo" in line for line in lines)


async def test_a_handler_exception_fails_the_task_with_its_text(
    connection: flame.Connection,
) -> None:
    await connection.register_application("echo", service_app("echo"))
    async with await connection.create_session({"application": "echo"}) as session:
        failed = await finish(session, b"fail")
        after = await finish(session, b"still here")
    assert failed.state is TaskState.FAILED
    assert failed.output == b"ValueError: the task asked to fail"
    assert (after.state, after.output) == (TaskState.SUCCEED, b"still here")


async def test_a_service_that_crashes_mid_session_fails_the_task(
    connection: flame.Connection,
) -> None:
    await connection.register_application("echo", service_app("echo"))
    async with await connection.create_session({"application": "echo"}) as session:
        before = await finish(session, b"first")
        crashed = await finish(session, b"crash")
    assert before.state is TaskState.SUCCEED
    assert crashed.state is TaskState.FAILED
    text = (crashed.output or b"").decode()
    assert "exited with code 3 while running task 2" in text
    assert "task 2 crash" in text  # its last output
    # The cluster goes on: a new session starts a new service.
    async with await connection.create_session({"application": "echo"}) as session:
        assert (await session.run_task(b"back")).output == b"back"


@pytest.fixture
async def single() -> AsyncIterator[flame.Connection]:
    """A cluster of one slot: one executor runs a session's tasks, in order."""
    async with LocalCluster(slots=1) as cluster, await flame.connect(cluster.endpoint) as conn:
        yield conn


async def finish_all(session: flame.Session, *inputs: bytes) -> list[Task]:
    """Create every task first, so that they queue, then watch each to its end."""
    created = [await session.create_task(data) for data in inputs]
    ended: list[Task] = []
    for task in created:
        last = task
        async with session.watch_task(task.id) as updates:
            async for update in updates:
                last = update
        ended.append(last)
    return ended


def children() -> list[psutil.Process]:
    """This process's descendants, zombies included: a reaped child is not one."""
    return psutil.Process().children(recursive=True)


async def test_the_task_after_a_crash_runs_in_a_new_service(
    single: flame.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flame.local")
    await single.register_application("echo", service_app("echo"))
    async with await single.create_session({"application": "echo"}) as session:
        first, crashed, second, third = await finish_all(session, b"pid", b"crash", b"pid", b"pid")
    assert first.state is TaskState.SUCCEED
    assert crashed.state is TaskState.FAILED
    text = (crashed.output or b"").decode()
    assert f"exited with code 3 while running task {crashed.id}" in text
    assert f"task {crashed.id} crash" in text  # its last output
    assert (second.state, third.state) == (TaskState.SUCCEED, TaskState.SUCCEED)
    # A new process, and only one: the task after it ran there too.
    assert second.output != first.output
    assert third.output == second.output
    lines = [record.getMessage() for record in caplog.records]
    # The new service entered the session before its task.
    entered = [line for line in lines if f"stdout: enter {session.id} echo" in line]
    assert len(entered) == 2
    restarts = [
        record.getMessage()
        for record in caplog.records
        if record.name == "flame.local.executors" and record.levelno == logging.WARNING
    ]
    assert len(restarts) == 1
    assert "the service of application 'echo' failed" in restarts[0]
    assert "restarting it for the next task" in restarts[0]
    assert f"session {session.id}" in restarts[0]
    assert "exited with code 3" in restarts[0]


async def test_a_handler_exception_keeps_the_service(
    single: flame.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flame.local")
    await single.register_application("echo", service_app("echo"))
    async with await single.create_session({"application": "echo"}) as session:
        before, failed, after = await finish_all(session, b"pid", b"fail", b"pid")
    assert failed.state is TaskState.FAILED
    assert (before.state, after.state) == (TaskState.SUCCEED, TaskState.SUCCEED)
    assert before.output == after.output
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_service_that_dies_between_tasks_fails_none(
    single: flame.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flame.local.shims.grpc")
    await single.register_application("echo", service_app("echo"))
    async with await single.create_session({"application": "echo"}) as session:
        (first,) = await finish_all(session, b"pid")
        assert first.output is not None
        pid = int(first.output)
        os.kill(pid, signal.SIGKILL)
        # The shim logs the exit as it sees it, before anything else runs.
        with anyio.fail_after(30):
            while not any(  # noqa: ASYNC110
                f"[{pid}]: was killed by SIGKILL" in r.getMessage() for r in caplog.records
            ):
                await anyio.sleep(0.02)
        (second,) = await finish_all(session, b"pid")
    assert second.state is TaskState.SUCCEED
    assert second.output is not None and int(second.output) != pid


async def test_a_task_succeeding_resets_the_crash_count(single: flame.Connection) -> None:
    await single.register_application("echo", service_app("echo"))
    almost = [b"crash"] * (MAX_RESTARTS - 1)
    async with await single.create_session({"application": "echo"}) as session:
        ended = await finish_all(session, *almost, b"pid", *almost, b"pid")
    # Counted from the last success on, no run of crashes is long enough.
    round_ = [TaskState.FAILED] * (MAX_RESTARTS - 1) + [TaskState.SUCCEED]
    assert [task.state for task in ended] == round_ + round_


async def test_a_service_that_always_crashes_is_given_up(single: flame.Connection) -> None:
    await single.register_application("echo", service_app("echo"))
    with anyio.fail_after(60):
        async with await single.create_session({"application": "echo"}) as session:
            ended = await finish_all(session, *[b"crash"] * (MAX_RESTARTS + 5))
            # Given up: no service runs for this session any more.
            assert children() == []
    assert all(task.state is TaskState.FAILED for task in ended)
    for task in ended[:MAX_RESTARTS]:
        assert f"exited with code 3 while running task {task.id}" in (task.output or b"").decode()
    last_crash = ended[MAX_RESTARTS - 1].id
    for task in ended[MAX_RESTARTS:]:
        text = (task.output or b"").decode()
        assert f"'echo' crashed {MAX_RESTARTS} times in a row" in text
        assert f"exited with code 3 while running task {last_crash}" in text  # the last reason


async def test_a_service_that_cannot_start_is_given_up_too(single: flame.Connection) -> None:
    await single.register_application("quitter", service_app("exit"))
    with anyio.fail_after(60):
        async with await single.create_session({"application": "quitter"}) as session:
            ended = await finish_all(session, *[b"anything"] * (MAX_RESTARTS + 2))
            assert children() == []
    assert all(task.state is TaskState.FAILED for task in ended)
    # Each start failure fails the task in hand, the first one too.
    for task in ended[:MAX_RESTARTS]:
        assert "exited with code 4 before it registered" in (task.output or b"").decode()
    for task in ended[MAX_RESTARTS:]:
        text = (task.output or b"").decode()
        assert f"'quitter' crashed {MAX_RESTARTS} times in a row" in text
        assert "exited with code 4 before it registered" in text


async def test_a_service_that_never_registers_fails_its_tasks(
    connection: flame.Connection,
) -> None:
    await connection.register_application(
        "silent", service_app("silent", FLAME_SERVICE_REGISTER_TIMEOUT="2")
    )
    async with await connection.create_session({"application": "silent"}) as session:
        failed = await finish(session, b"anything")
    assert failed.state is TaskState.FAILED
    text = (failed.output or b"").decode()
    assert "did not register within 2 s" in text
    assert "not registering" in text


async def test_a_service_that_exits_before_registering_says_so(
    connection: flame.Connection,
) -> None:
    await connection.register_application("quitter", service_app("exit"))
    async with await connection.create_session({"application": "quitter"}) as session:
        failed = await finish(session, b"anything")
    assert failed.state is TaskState.FAILED
    text = (failed.output or b"").decode()
    assert "exited with code 4 before it registered" in text
    assert "giving up before registering" in text


async def test_a_command_that_cannot_start_fails_with_its_reason(
    connection: flame.Connection, tmp_path: pathlib.Path
) -> None:
    missing = str(tmp_path / "no-such-program")
    await connection.register_application(
        "missing", ApplicationAttributes(shim=Shim.GRPC, command=missing)
    )
    async with await connection.create_session({"application": "missing"}) as session:
        failed = await finish(session, b"anything")
    assert failed.state is TaskState.FAILED
    assert "cannot start the service of application 'missing'" in (failed.output or b"").decode()


@pytest.mark.parametrize("mode", ["echo", "async"])
async def test_sigterm_lets_the_task_finish_and_leaves_the_session(
    anyio_backend: str, mode: str
) -> None:
    async with fake_manager() as (manager, address):
        env = dict(os.environ, FLAME_SERVICE_MANAGER=address)
        process = await anyio.open_process(
            [sys.executable, SERVICES, mode, anyio_backend], env=env, stderr=None
        )
        async with process:
            assert process.stdout is not None
            lines = LineReader(process.stdout)
            with anyio.fail_after(30):
                await manager.registered.wait()
            registration = manager.registrations[0]
            assert registration.service_id == str(process.pid)
            async with await Channel.connect(registration.address) as channel:
                stub = pb.GrpcShimStub(channel)
                await channel.unary(stub.on_session_enter, pb.SessionContext(session_id="1"))
                async with anyio.create_task_group() as tg:
                    outputs: list[bytes | None] = []

                    async def invoke() -> None:
                        task = pb.TaskContext(task_id="1", session_id="1", input=b"sleep 0.5")
                        outputs.append((await channel.unary(stub.on_task_invoke, task)).data)

                    tg.start_soon(invoke)
                    with anyio.fail_after(30):
                        await lines.until("task 1 started")
                    process.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                code = await process.wait()
                rest = await lines.rest()
    assert outputs == [b"slept"]
    assert code == 0
    assert rest == ["leave", "stopped"]


class LineReader:
    """Reads a child's stdout line by line."""

    def __init__(self, stream: anyio.abc.ByteReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""
        self._ended = False

    async def _more(self) -> None:
        try:
            self._buffer += await self._stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._ended = True

    async def until(self, text: str) -> None:
        while True:
            line, found, rest = self._buffer.partition(b"\n")
            if found:
                self._buffer = rest
                if line.decode().strip() == text:
                    return
            elif self._ended:
                raise AssertionError(f"the service ended before printing {text!r}")
            else:
                await self._more()

    async def rest(self) -> list[str]:
        while not self._ended:
            await self._more()
        return [line for line in self._buffer.decode().splitlines() if line]


async def test_a_service_stops_when_the_process_that_started_it_is_gone() -> None:
    async with fake_manager() as (manager, address):
        env = dict(os.environ, FLAME_SERVICE_MANAGER=address)
        # A parent that starts the service, then waits to be killed.
        parent_code = (
            "import subprocess, sys, time; "
            f"subprocess.Popen([sys.executable, {SERVICES!r}, 'echo']); time.sleep(3600)"
        )
        parent = await anyio.open_process([sys.executable, "-c", parent_code], env=env)
        async with parent:
            with anyio.fail_after(30):
                await manager.registered.wait()
            service = psutil.Process(int(manager.registrations[0].service_id))
            assert service.ppid() == parent.pid
            parent.kill()
            await parent.wait()
        # Not our child: nothing tells us when it ends but looking.
        with anyio.fail_after(30):
            while service.is_running() and service.status() != psutil.STATUS_ZOMBIE:  # noqa: ASYNC110
                await anyio.sleep(0.1)
