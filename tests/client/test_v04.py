"""Against a server that answers as Flame v0.4 does: clear errors, correct results."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from v04_server import V04Server

import flame
from flame import FlameError, FlameErrorCode, Shim, TaskState


async def _session(conn: flame.Connection, name: str = "app") -> flame.Session:
    await conn.register_application(name, {"shim": Shim.SHELL, "command": "sh"})
    return await conn.create_session(flame.SessionAttributes(application=name, slots=1))


async def test_register_and_list_applications(v04_conn: flame.Connection) -> None:
    await v04_conn.register_application(
        "my-app", {"shim": Shim.SHELL, "command": "python", "arguments": ["script.py"]}
    )
    await v04_conn.register_application(
        "other", flame.ApplicationAttributes(name="other", shim=Shim.STDIO, environments=["A=1"])
    )
    apps = {app.name: app for app in await v04_conn.list_applications()}
    assert apps["my-app"].shim is Shim.SHELL
    assert apps["my-app"].command == "python" and apps["my-app"].arguments == ["script.py"]
    assert apps["other"].shim is Shim.STDIO and apps["other"].environments == ["A=1"]
    assert apps["other"].state is flame.ApplicationState.ENABLED
    assert apps["other"].creation_time.tzinfo is not None


async def test_a_refused_registration_is_an_error_with_the_servers_reason(
    v04_conn: flame.Connection,
) -> None:
    await v04_conn.register_application("app", {"shim": Shim.LOG})
    with pytest.raises(FlameError) as caught:
        await v04_conn.register_application("app", {"shim": Shim.LOG})
    assert caught.value.code == FlameErrorCode.ALREADY_EXISTS
    assert "already exists" in caught.value.message and "'app'" in caught.value.message


async def test_unimplemented_calls_say_so(v04_conn: flame.Connection) -> None:
    await v04_conn.register_application("app", {"shim": Shim.LOG})
    with pytest.raises(FlameError) as caught:
        await v04_conn.unregister_application("app")
    assert caught.value.code == FlameErrorCode.UNIMPLEMENTED
    assert "UnregisterApplication" in caught.value.message
    assert [app.name for app in await v04_conn.list_applications()] == ["app"]


async def test_session_life(v04_conn: flame.Connection) -> None:
    session = await _session(v04_conn)
    assert (session.id, session.application, session.slots) == ("1", "app", 1)
    assert session.state is flame.SessionState.OPEN and session.completion_time is None
    await session.run_task(b"one")
    await session.run_task(b"two")
    fetched = await v04_conn.get_session(session.id)
    assert (fetched.succeed, fetched.pending, fetched.running, fetched.failed) == (2, 0, 0, 0)
    assert [s.id for s in await v04_conn.list_sessions()] == ["1"]
    closed = await v04_conn.close_session(session.id)
    assert closed.state is flame.SessionState.CLOSED and closed.completion_time is not None


async def test_refusals_of_a_v04_cluster_are_clear_errors(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    session = await _session(v04_conn)
    await session.close()
    # A v0.4 cluster refuses a task on a closed session with UNKNOWN "unknown".
    with pytest.raises(FlameError) as caught:
        await session.create_task(b"late")
    assert caught.value.code == FlameErrorCode.INVALID_STATE
    assert "CreateTask" in caught.value.message and "closed" in caught.value.message
    with pytest.raises(FlameError) as caught:
        await v04_conn.get_session("42")
    assert caught.value.code == FlameErrorCode.NOT_FOUND
    with pytest.raises(FlameError) as caught:
        await session.get_task("9")
    assert caught.value.code == FlameErrorCode.NOT_FOUND
    with pytest.raises(FlameError) as caught:
        await v04_conn.get_session("not-a-number")
    assert caught.value.code == FlameErrorCode.INVALID_ARGUMENT


async def test_close_with_a_running_task_is_refused_and_changes_nothing(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    session = await _session(v04_conn)
    task = await session.create_task(b"hold")
    with pytest.raises(FlameError) as caught:
        await session.close()
    assert caught.value.code == FlameErrorCode.INVALID_STATE
    assert (await v04_conn.get_session(session.id)).state is flame.SessionState.OPEN
    await v04.release()
    async for update in session.watch_task(task.id):
        assert update.is_completed()
    assert (await session.close()).state is flame.SessionState.CLOSED


async def test_local_checks_refuse_before_any_call(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    session = await _session(v04_conn)
    before = list(v04.frontend.calls)
    attempts = [
        lambda: v04_conn.register_application("", {"shim": Shim.LOG}),
        lambda: v04_conn.register_application("x", {"shim": Shim.LOG, "comand": "typo"}),
        lambda: v04_conn.register_application(
            "x", flame.ApplicationAttributes(name="y", shim=Shim.LOG)
        ),
        lambda: v04_conn.register_application("x", {"command": "sh"}),  # no shim
        lambda: v04_conn.create_session({"application": "app", "slots": 0}),
        lambda: v04_conn.create_session({"application": ""}),
        lambda: session.create_task("text"),  # type: ignore[arg-type]
        lambda: session.run_task(None),  # type: ignore[arg-type]
        lambda: v04_conn.get_session(""),
    ]
    for attempt in attempts:
        with pytest.raises(FlameError) as caught:
            await attempt()
        assert caught.value.code == FlameErrorCode.INVALID_ARGUMENT
    assert v04.frontend.calls == before
    with pytest.raises(FlameError) as caught:
        await v04_conn.register_application("x", {"shim": Shim.LOG, "comand": "typo"})
    assert "'comand'" in caught.value.message


async def test_watch_does_not_need_the_current_state_first(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    session = await _session(v04_conn)
    task = await session.create_task(b"hold")
    seen: list[TaskState] = []
    async with anyio.create_task_group() as group:

        async def release_when_watched() -> None:
            await v04.wait_for_watches(1)
            await v04.release()

        group.start_soon(release_when_watched)
        async for update in session.watch_task(task.id):
            seen.append(update.state)
    # The server sent only the change after the watch began: Succeed.
    assert seen == [TaskState.SUCCEED]
    assert (await session.get_task(task.id)).output == b"hold"


async def test_watching_a_finished_task_gives_its_final_state(
    v04_conn: flame.Connection,
) -> None:
    session = await _session(v04_conn)
    done = await session.run_task(b"x")
    updates = [update async for update in session.watch_task(done.id)]
    assert [u.state for u in updates] == [TaskState.SUCCEED]
    assert updates[0].output == b"x"


async def test_run_task_returns_the_finished_task(v04_conn: flame.Connection) -> None:
    session = await _session(v04_conn)
    task = await session.run_task(b"payload")
    assert task.state is TaskState.SUCCEED and task.output == b"payload"
    assert task.completion_time is not None and task.session_id == session.id


async def test_a_failed_task_is_returned_with_its_output(v04_conn: flame.Connection) -> None:
    session = await _session(v04_conn)
    task = await session.run_task(b"fail:disk full")
    assert task.state is TaskState.FAILED and task.output == b"disk full"
    assert task.id == "1" and task.completion_time is not None
    assert (await session.get_task("1")).state is TaskState.FAILED


async def test_check_raises_a_failed_task_with_its_output(v04_conn: flame.Connection) -> None:
    session = await _session(v04_conn)
    with pytest.raises(FlameError) as caught:
        await session.run_task(b"fail:disk full", check=True)
    assert caught.value.code == FlameErrorCode.INTERNAL
    assert "disk full" in caught.value.message and "task 1 of session 1" in caught.value.message
    assert caught.value.task is not None and caught.value.task.output == b"disk full"


class _Recorder(flame.TaskInformer):
    def __init__(self) -> None:
        self.states: list[TaskState] = []
        self.errors: list[FlameError] = []

    def on_update(self, task: flame.Task) -> None:
        self.states.append(task.state)

    async def on_error(self, error: FlameError) -> None:
        await anyio.lowlevel.checkpoint()
        self.errors.append(error)


async def test_informer_hears_each_state_once_in_order(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    session = await _session(v04_conn)
    informer = _Recorder()
    async with anyio.create_task_group() as group:

        async def release_when_watched() -> None:
            await v04.wait_for_watches(1)
            await v04.release()

        group.start_soon(release_when_watched)
        task = await session.run_task(b"hold", informer)
    assert task.output == b"hold"
    # PENDING from CreateTask's answer; RUNNING is seen or skipped by the watch.
    assert informer.states[0] is TaskState.PENDING
    assert informer.states[-1] is TaskState.SUCCEED
    assert informer.states in (
        [TaskState.PENDING, TaskState.SUCCEED],
        [TaskState.PENDING, TaskState.RUNNING, TaskState.SUCCEED],
    )
    assert informer.errors == []


async def test_informer_hears_the_failure(v04_conn: flame.Connection) -> None:
    session = await _session(v04_conn)
    informer = _Recorder()
    task = await session.run_task(b"fail:bad input", informer)
    assert task.state is TaskState.FAILED
    assert [error.task for error in informer.errors] == [task]
    assert informer.states[-1] is TaskState.FAILED
    checked = _Recorder()
    with pytest.raises(FlameError) as caught:
        await session.run_task(b"fail:bad input", checked, check=True)
    assert checked.errors == [caught.value] and caught.value.task is not None


async def test_informer_hears_a_refusal(v04_conn: flame.Connection) -> None:
    session = await _session(v04_conn)
    await session.close()
    informer = _Recorder()
    with pytest.raises(FlameError) as caught:
        await session.run_task(b"x", informer)
    assert caught.value.code == FlameErrorCode.INVALID_STATE
    assert informer.errors == [caught.value] and informer.states == []


async def test_an_informer_exception_propagates_as_is(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    session = await _session(v04_conn)

    class Broken(flame.TaskInformer):
        async def on_update(self, task: flame.Task) -> None:
            # Fail while the watch is open: the watch must be closed too.
            await v04.wait_for_watches(1)
            raise ValueError("informer bug")

    with pytest.raises(ValueError, match="informer bug"):
        await session.run_task(b"hang", Broken())
    await v04.wait_for_watches(0)


async def test_a_silent_endpoint_fails_in_bounded_time_naming_it() -> None:
    # Accepts TCP connections and never answers.
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        address = f"http://127.0.0.1:{port}"
        async with anyio.create_task_group() as group:
            group.start_soon(listener.serve, _hold_open)
            # Finding out the wire is a request too: bounded the same way.
            with pytest.raises(FlameError) as probing:
                await flame.connect(address, request_timeout=0.5)
            async with await flame.connect(address, request_timeout=0.5, wire="v0.4") as conn:
                with pytest.raises(FlameError) as caught:
                    await conn.list_sessions()
            group.cancel_scope.cancel()
    for error in (probing.value, caught.value):
        assert error.code == FlameErrorCode.TIMEOUT
        assert address in error.message


async def _hold_open(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        await anyio.sleep_forever()


async def test_nothing_listening_is_unavailable_naming_the_address() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    address = f"http://127.0.0.1:{port}"
    with pytest.raises(FlameError) as caught:
        await flame.connect(address, connect_timeout=5)
    assert caught.value.code == FlameErrorCode.UNAVAILABLE
    assert address in caught.value.message


async def test_an_invalid_address_is_a_config_error() -> None:
    with pytest.raises(FlameError) as caught:
        await flame.Connection.connect("invalid://address")
    assert caught.value.code == FlameErrorCode.INVALID_CONFIG
    assert "invalid://address" in caught.value.message


async def test_a_closed_connection_refuses_calls(v04: V04Server) -> None:
    conn = await flame.connect(v04.endpoint)
    session = conn.session_client("1")
    await conn.close()
    await conn.close()
    with pytest.raises(FlameError) as caught:
        await conn.list_sessions()
    assert caught.value.code == FlameErrorCode.INVALID_STATE
    with pytest.raises(FlameError) as caught:
        await session.get_task("1")
    assert caught.value.code == FlameErrorCode.INVALID_STATE
    with pytest.raises(FlameError):
        async for _ in session.watch_task("1"):
            pass


async def test_a_watch_that_ends_early_falls_back_to_get_task(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    session = await _session(v04_conn)
    task = await session.create_task(b"cut")
    with anyio.fail_after(20):
        while not (await session.get_task(task.id)).is_completed():  # noqa: ASYNC110
            await anyio.sleep(0.01)
    updates = [update async for update in session.watch_task(task.id)]
    assert [(u.state, u.output) for u in updates] == [(TaskState.SUCCEED, b"cut")]
    assert (await session.run_task(b"cut")).output == b"cut"


async def test_a_watch_that_ends_before_the_task_is_unavailable(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    session = await _session(v04_conn)
    task = await session.create_task(b"cut-hold")
    with pytest.raises(FlameError) as caught:
        async for _ in session.watch_task(task.id):
            pass
    assert caught.value.code == FlameErrorCode.UNAVAILABLE
    assert f"task {task.id} of session {session.id}" in caught.value.message
    assert "RUNNING" in caught.value.message or "PENDING" in caught.value.message
    with pytest.raises(FlameError) as caught:
        await session.run_task(b"cut-hold")
    assert caught.value.code == FlameErrorCode.UNAVAILABLE
    await v04.release()


async def test_a_slow_informer_does_not_hold_back_the_watch(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    session = await _session(v04_conn)

    class Slow(flame.TaskInformer):
        def __init__(self) -> None:
            self.states: list[TaskState] = []

        async def on_update(self, task: flame.Task) -> None:
            if task.state is TaskState.PENDING:
                # Blocked here, the informer sees the watch open, read the
                # task's end and close: the updates wait in the buffer.
                await v04.wait_for_watches(1)
                await v04.release()
                await v04.wait_for_watches(0)
            self.states.append(task.state)

    informer = Slow()
    task = await session.run_task(b"hold", informer)
    assert task.state is TaskState.SUCCEED
    assert informer.states[0] is TaskState.PENDING and informer.states[-1] is TaskState.SUCCEED
