"""Every public method of the client against the embedded cluster, under both backends."""

from __future__ import annotations

from datetime import timezone

import anyio
import pytest

import flame
from flame import FlameError, FlameErrorCode, Shim, TaskState
from flame.local import LocalCluster


async def _shell(conn: flame.Connection) -> flame.Session:
    await conn.register_application("sh", {"shim": Shim.SHELL})
    return await conn.create_session(flame.SessionAttributes(application="sh", slots=1))


async def test_connect_and_close(cluster: LocalCluster) -> None:
    conn = await flame.Connection.connect(cluster.endpoint)
    assert conn.endpoint == cluster.endpoint
    assert cluster.endpoint in repr(conn)
    assert await conn.list_sessions() == []
    await conn.close()
    assert "closed" in repr(conn)
    async with await flame.connect(cluster.endpoint) as other:
        assert await other.list_applications() == []


async def test_applications(conn: flame.Connection) -> None:
    await conn.register_application(
        "my-app", {"shim": Shim.SHELL, "command": "python", "arguments": ["script.py"]}
    )
    await conn.register_application(
        "logger",
        flame.ApplicationAttributes(
            shim=Shim.LOG, environments={"LEVEL": "debug"}, working_directory="/tmp"
        ),
    )
    apps = {app.name: app for app in await conn.list_applications()}
    assert set(apps) == {"my-app", "logger"}
    assert (apps["my-app"].shim, apps["my-app"].command) == (Shim.SHELL, "python")
    assert apps["my-app"].arguments == ["script.py"]
    assert apps["logger"].environments == ["LEVEL=debug"]
    assert apps["logger"].working_directory == "/tmp"
    assert apps["logger"].state is flame.ApplicationState.ENABLED
    assert apps["logger"].creation_time.tzinfo is timezone.utc
    with pytest.raises(FlameError) as caught:
        await conn.register_application("logger", {"shim": Shim.LOG})
    assert caught.value.code is FlameErrorCode.ALREADY_EXISTS
    assert "'logger' is already registered; unregister it first" in caught.value.message
    with pytest.raises(FlameError) as caught:
        await conn.register_application("no-shim", {"command": "python"})
    assert caught.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert "the application has no shim; give one of Shim.LOG" in caught.value.message
    assert "no-shim" not in {app.name for app in await conn.list_applications()}
    await conn.unregister_application("logger")
    assert [app.name for app in await conn.list_applications()] == ["my-app"]


async def test_sessions(conn: flame.Connection) -> None:
    await conn.register_application("log", {"shim": Shim.LOG})
    first = await conn.create_session(flame.SessionAttributes(application="log", slots=2))
    second = await conn.create_session({"application": "log", "common_data": b"shared"})
    assert isinstance(first, flame.Session) and isinstance(first, flame.SessionClient)
    assert (first.application, first.slots, first.state) == ("log", 2, flame.SessionState.OPEN)
    assert first.creation_time.tzinfo is timezone.utc and first.completion_time is None
    assert first.id != second.id
    assert {s.id for s in await conn.list_sessions()} == {first.id, second.id}
    fetched = await conn.get_session(first.id)
    assert fetched == first
    closed = await conn.close_session(second.id)
    assert closed.state is flame.SessionState.CLOSED and closed.completion_time is not None
    assert (await conn.get_session(second.id)).state is flame.SessionState.CLOSED
    with pytest.raises(FlameError) as caught:
        await second.create_task(b"late")
    # The advice names only calls this SDK has.
    assert caught.value.code == FlameErrorCode.INVALID_STATE
    assert f"session {second.id} is closed; create a new session for more tasks" in (
        caught.value.message
    )
    with pytest.raises(FlameError) as caught:
        await conn.get_session("999")
    assert caught.value.code == FlameErrorCode.NOT_FOUND


async def test_tasks_of_the_shell_shim(conn: flame.Connection) -> None:
    session = await _shell(conn)
    created = await session.create_task(b"echo created")
    assert created.state is TaskState.PENDING and created.input == b"echo created"
    assert created.session_id == session.id
    finished = await session.run_task(b"echo hello")
    assert finished.state is TaskState.SUCCEED and finished.output == b"hello\n"
    assert finished.completion_time is not None and finished.completion_time.tzinfo is timezone.utc
    updates = [update async for update in session.watch_task(created.id)]
    assert updates[-1].state is TaskState.SUCCEED and updates[-1].output == b"created\n"
    assert [u.state for u in updates] == sorted(u.state for u in updates)
    fetched = await session.get_task(created.id)
    assert fetched == updates[-1]
    with pytest.raises(FlameError) as caught:
        await session.get_task("999")
    assert caught.value.code == FlameErrorCode.NOT_FOUND


async def test_log_shim_tasks_succeed_without_output(conn: flame.Connection) -> None:
    await conn.register_application("log", {"shim": Shim.LOG})
    async with await conn.create_session(flame.SessionAttributes(application="log")) as session:
        results: list[flame.Task] = []

        async def run(index: int) -> None:
            results.append(await session.run_task(str(index).encode()))

        async with anyio.create_task_group() as group:
            for index in range(20):
                group.start_soon(run, index)
        assert len(results) == 20
        assert all(t.state is TaskState.SUCCEED and not t.output for t in results)
        assert len({t.id for t in results}) == 20
    assert session.state is flame.SessionState.CLOSED and session.succeed == 20


async def test_watch_with_async_with(conn: flame.Connection) -> None:
    session = await _shell(conn)
    task = await session.create_task(b"sleep 0.1; echo done")
    async with session.watch_task(task.id) as updates:
        states = [update.state async for update in updates]
    assert states[-1] is TaskState.SUCCEED
    assert TaskState.RUNNING in states or TaskState.PENDING in states or len(states) == 1


async def test_a_failing_command_comes_back_as_a_failed_task(conn: flame.Connection) -> None:
    session = await _shell(conn)
    task = await session.run_task(b"echo broken >&2; exit 3")
    assert task.state is TaskState.FAILED and task.is_completed()
    assert task.id == "1" and task.completion_time is not None
    assert b"broken" in (task.output or b"")
    assert await session.get_task("1") == task


async def test_check_raises_a_failed_task_with_the_task(conn: flame.Connection) -> None:
    session = await _shell(conn)
    with pytest.raises(FlameError) as caught:
        await session.run_task(b"echo broken >&2; exit 3", check=True)
    assert caught.value.code == FlameErrorCode.INTERNAL
    assert "task 1 of session" in caught.value.message
    failed = caught.value.task
    assert failed is not None and failed.state is TaskState.FAILED
    assert failed == await session.get_task("1")
    # A task that succeeds is returned with check=True too.
    assert (await session.run_task(b"echo ok", check=True)).output == b"ok\n"


async def test_run_task_with_an_informer(conn: flame.Connection) -> None:
    session = await _shell(conn)

    class Informer(flame.TaskInformer):
        def __init__(self) -> None:
            self.states: list[TaskState] = []
            self.errors: list[FlameError] = []

        async def on_update(self, task: flame.Task) -> None:
            self.states.append(task.state)

        def on_error(self, error: FlameError) -> None:
            self.errors.append(error)

    informer = Informer()
    task = await session.run_task(b"echo hi", informer)
    assert task.output == b"hi\n"
    assert informer.states[0] is TaskState.PENDING and informer.states[-1] is TaskState.SUCCEED
    assert len(informer.states) == len(set(informer.states))
    assert informer.errors == []
    failing = Informer()
    failed = await session.run_task(b"exit 1", failing)
    assert failed.state is TaskState.FAILED and failing.states[-1] is TaskState.FAILED
    assert [error.task for error in failing.errors] == [failed]
    checked = Informer()
    with pytest.raises(FlameError) as caught:
        await session.run_task(b"exit 1", checked, check=True)
    assert checked.errors == [caught.value] and checked.states[-1] is TaskState.FAILED
    # A plain TaskInformer is a valid do-nothing informer.
    assert (await session.run_task(b"echo x", flame.TaskInformer())).output == b"x\n"


async def test_session_client_for_a_known_id(conn: flame.Connection) -> None:
    session = await _shell(conn)
    client = conn.session_client(session.id)
    assert type(client) is flame.SessionClient and client.id == session.id
    same = flame.SessionClient(conn, int(session.id))
    assert same.id == session.id
    assert (await client.run_task(b"echo via client")).output == b"via client\n"
    assert (await same.get_task("1")).output == b"via client\n"
    async with client:
        pass
    assert (await conn.get_session(session.id)).state is flame.SessionState.CLOSED


async def test_session_closes_on_exit_and_refuses_tasks_after(conn: flame.Connection) -> None:
    session = await _shell(conn)
    async with session:
        await session.run_task(b"true")
    assert session.state is flame.SessionState.CLOSED and session.succeed == 1
    with pytest.raises(FlameError) as caught:
        await session.create_task(b"true")
    assert caught.value.code == FlameErrorCode.INVALID_STATE


async def test_explicit_close_inside_the_block_is_not_repeated(conn: flame.Connection) -> None:
    session = await _shell(conn)
    async with session:
        closed = await session.close()
        assert closed is session and session.state is flame.SessionState.CLOSED


async def test_a_failing_block_keeps_its_own_error(conn: flame.Connection) -> None:
    session = await _shell(conn)
    # The block fails with a task still running: closing is refused, and the
    # block's own error is what the caller sees.
    with pytest.raises(KeyError):
        async with session:
            await session.create_task(b"sleep 5")
            raise KeyError("mine")
    with pytest.raises(ZeroDivisionError):
        async with await conn.create_session({"application": "sh"}) as other:
            _ = 1 / 0
    assert (await conn.get_session(other.id)).state is flame.SessionState.CLOSED
