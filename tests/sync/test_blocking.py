"""Every method of the blocking API, against the embedded cluster and the v0.4-like server.

Each test runs with the connection's loop on asyncio and on trio. The
behaviour checked is the async API's: these tests show it comes through the
blocking layer unchanged (values, order, laziness, failures, informers).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Iterator
from datetime import timezone
from typing import Any

import anyio
import pytest

import flame
import flame.functions
import flame.sync
from flame import FlameError, FlameErrorCode, Shim, TaskState
from flame.local import LocalCluster
from flame.sync._functions import FunctionResults, FunctionSession

from .conftest import ThreadedV04


def _shell(conn: flame.sync.Connection) -> flame.sync.Session:
    conn.register_application("sh", {"shim": Shim.SHELL})
    return conn.create_session(flame.SessionAttributes(application="sh"))


class _Counted:
    """An input iterable that records how far it has been read, and by which thread."""

    def __init__(self, items: list[bytes]) -> None:
        self.items = items
        self.taken = 0
        self.threads: set[int] = set()

    def __iter__(self) -> Iterator[bytes]:
        for item in self.items:
            self.taken += 1
            self.threads.add(threading.get_ident())
            yield item


class _Recorder(flame.TaskInformer):
    def __init__(self) -> None:
        self.updates: list[tuple[str, TaskState]] = []
        self.errors: list[FlameError] = []
        self.threads: set[int] = set()

    def on_update(self, task: flame.Task) -> None:
        self.threads.add(threading.get_ident())
        self.updates.append((task.id, task.state))

    def on_error(self, error: FlameError) -> None:
        self.threads.add(threading.get_ident())
        self.errors.append(error)


def test_the_names_of_flame_are_all_here() -> None:
    blocking = {"Connection", "Session", "SessionClient", "TaskWatcher", "FinishedTasks", "connect"}
    assert set(flame.__all__) <= set(flame.sync.__all__)
    for name in flame.__all__:
        if name in blocking:
            assert getattr(flame.sync, name) is not getattr(flame, name)
        else:
            assert getattr(flame.sync, name) is getattr(flame, name), name


@pytest.mark.parametrize(
    ("blocking", "asynchronous"),
    [
        (flame.sync.connect, flame.connect),
        (flame.sync.Connection, flame.Connection),
        (flame.sync.SessionClient, flame.SessionClient),
        (flame.sync.Session, flame.Session),
        (flame.sync.TaskWatcher, flame.TaskWatcher),
        (flame.sync.FinishedTasks, flame.FinishedTasks),
        (FunctionSession, flame.functions.FunctionSession),
        (FunctionResults, flame.functions.FunctionResults),
    ],
    ids=lambda value: getattr(value, "__qualname__", ""),
)
def test_every_public_method_and_argument_of_the_async_api_is_here(
    blocking: Any, asynchronous: Any
) -> None:
    # What the async API gains, the blocking one must offer too.
    def public(of: Any) -> dict[str, inspect.Signature]:
        if inspect.isfunction(of):
            return {of.__name__: inspect.signature(of)}
        names = {name for name in dir(of) if not name.startswith("_")}
        return {
            name: inspect.signature(getattr(of, name))
            for name in names
            if callable(getattr(of, name)) and not inspect.isclass(getattr(of, name))
        }

    mine = public(blocking)
    for name, signature in public(asynchronous).items():
        name = {"aclose": "close"}.get(name, name)
        assert name in mine, f"flame.sync lacks {name}"
        theirs = [p for p in signature.parameters if p not in ("self", "cls")]
        assert set(theirs) <= set(mine[name].parameters), (name, theirs)


def test_connection(cluster: LocalCluster, backend: str) -> None:
    conn = flame.sync.Connection.connect(cluster.endpoint, backend=backend)
    assert (conn.endpoint, conn.backend) == (cluster.endpoint, backend)
    assert repr(conn) == f"<flame.sync.Connection to {cluster.endpoint} (open)>"
    assert conn.list_sessions() == []
    conn.close()
    conn.close()  # harmless
    assert "(closed)" in repr(conn)
    with pytest.raises(FlameError) as caught:
        conn.list_applications()
    assert caught.value.code is FlameErrorCode.INVALID_STATE
    assert caught.value.message == f"the connection to {cluster.endpoint} is closed; connect again"


def test_applications(conn: flame.sync.Connection) -> None:
    conn.register_application(
        "my-app", {"shim": Shim.SHELL, "command": "python", "arguments": ["script.py"]}
    )
    conn.register_application("logger", flame.ApplicationAttributes(shim=Shim.LOG))
    apps = {app.name: app for app in conn.list_applications()}
    assert set(apps) == {"my-app", "logger"}
    assert (apps["my-app"].shim, apps["my-app"].arguments) == (Shim.SHELL, ["script.py"])
    assert apps["logger"].creation_time.tzinfo is timezone.utc
    with pytest.raises(FlameError) as caught:
        conn.register_application("logger", {"shim": Shim.LOG})
    assert caught.value.code is FlameErrorCode.ALREADY_EXISTS
    conn.unregister_application("logger")
    assert [app.name for app in conn.list_applications()] == ["my-app"]


def test_sessions(conn: flame.sync.Connection) -> None:
    conn.register_application("log", {"shim": Shim.LOG})
    first = conn.create_session(flame.SessionAttributes(application="log", slots=2))
    second = conn.create_session({"application": "log", "common_data": b"shared"})
    assert isinstance(first, flame.sync.Session) and isinstance(first, flame.sync.SessionClient)
    assert (first.application, first.slots, first.state) == ("log", 2, flame.SessionState.OPEN)
    assert first.creation_time.tzinfo is timezone.utc and first.completion_time is None
    assert (first.pending, first.running, first.succeed, first.failed) == (0, 0, 0, 0)
    assert repr(first).startswith("flame.sync.Session(id=")
    assert {s.id for s in conn.list_sessions()} == {first.id, second.id}
    assert conn.get_session(first.id) == first
    closed = conn.close_session(second.id)
    assert isinstance(closed, flame.sync.Session) and closed.state is flame.SessionState.CLOSED
    with pytest.raises(FlameError) as caught:
        conn.get_session("999")
    assert caught.value.code is FlameErrorCode.NOT_FOUND
    client = conn.session_client(first.id)
    assert type(client) is flame.sync.SessionClient and client.id == first.id
    assert flame.sync.SessionClient(conn, int(first.id)).id == first.id
    with pytest.raises(FlameError) as caught:
        flame.sync.SessionClient(object(), "1")  # type: ignore[arg-type]
    assert caught.value.code is FlameErrorCode.INVALID_ARGUMENT
    # Closing refreshes the session's fields.
    assert first.close() is first and first.state is flame.SessionState.CLOSED
    assert first.completion_time is not None


def test_tasks(conn: flame.sync.Connection) -> None:
    with _shell(conn) as session:
        created = session.create_task(b"echo made")
        assert created.state is TaskState.PENDING
        updates = [update.state for update in session.watch_task(created.id)]
        assert updates[-1] is TaskState.SUCCEED
        done = session.get_task(created.id)
        assert (done.state, done.output) == (TaskState.SUCCEED, b"made\n")
        task = session.run_task(b"echo hello")
        assert (task.state, task.output) == (TaskState.SUCCEED, b"hello\n")
        failed = session.run_task(b"echo nope >&2; exit 3")
        assert failed.state is TaskState.FAILED and b"nope" in (failed.output or b"")
        with pytest.raises(FlameError) as caught:
            session.run_task(b"echo nope >&2; exit 3", check=True)
        assert caught.value.code is FlameErrorCode.INTERNAL and "nope" in caught.value.message
        assert caught.value.task is not None and caught.value.task.state is TaskState.FAILED
        with pytest.raises(FlameError) as caught:
            session.create_task("text")  # type: ignore[arg-type]
        assert caught.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert session.state is flame.SessionState.CLOSED  # left the with


def test_a_session_left_by_an_error_keeps_the_error(
    cluster: LocalCluster, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = flame.sync.connect(cluster.endpoint, backend=backend)
    session = _shell(conn)
    with pytest.raises(KeyError), session:
        conn.close()  # the session cannot be closed any more
        raise KeyError("the body's own")
    assert f"session {session.id} was left open" in caplog.text
    with pytest.raises(FlameError) as caught, session:
        pass  # no error of its own: the close's is raised
    assert caught.value.code is FlameErrorCode.INVALID_STATE


def test_run_task_tells_the_informer_in_the_calling_thread(conn: flame.sync.Connection) -> None:
    session = _shell(conn)
    informer = _Recorder()
    task = session.run_task(b"sleep 0.1; echo hi", informer)
    states = [state for _, state in informer.updates]
    assert states[0] is TaskState.PENDING and states[-1] is TaskState.SUCCEED
    assert informer.threads == {threading.get_ident()}
    failed = session.run_task(b"exit 1", informer)
    assert failed.state is TaskState.FAILED
    assert len(informer.errors) == 1 and informer.errors[0].code is FlameErrorCode.INTERNAL
    assert informer.errors[0].task == failed
    assert task.output == b"hi\n"


def test_run_tasks(conn: flame.sync.Connection) -> None:
    session = _shell(conn)
    inputs = [b"sleep 0.3; echo 0"] + [f"echo {i}".encode() for i in range(1, 8)]
    tasks = session.run_tasks(inputs, concurrency=4)
    assert [task.output for task in tasks] == [f"{i}\n".encode() for i in range(8)]
    generated = session.run_tasks((f"echo {i}".encode() for i in range(20)), concurrency=3)
    assert [task.output for task in generated] == [f"{i}\n".encode() for i in range(20)]
    assert session.run_tasks([]) == []


def test_run_tasks_with_an_informer(conn: flame.sync.Connection) -> None:
    session = _shell(conn)
    informer = _Recorder()
    tasks = session.run_tasks([b"echo a", b"echo b", b"echo c"], informer=informer)
    for task in tasks:
        states = [state for tid, state in informer.updates if tid == task.id]
        assert states[0] is TaskState.PENDING and states[-1] is TaskState.SUCCEED
    assert informer.threads == {threading.get_ident()}


def test_failures_as_the_async_api(v04: ThreadedV04, v04_conn: flame.sync.Connection) -> None:
    v04_conn.register_application("app", {"shim": Shim.SHELL})
    session = v04_conn.create_session(flame.SessionAttributes(application="app"))
    # fail_fast: the first failure, as it is; the held ones cancelled; nothing more read.
    inputs = _Counted([b"hold", b"hold", b"fail:boom"] + [b"hold"] * 20)
    with pytest.raises(FlameError) as caught:
        session.run_tasks(inputs, concurrency=3)
    assert type(caught.value) is FlameError and "boom" in caught.value.message
    v04.wait_for_watches(0)
    assert inputs.taken == 3
    v04.release()
    # fail_fast=False: everything runs, the failures come together.
    with pytest.raises(flame.TaskFailures) as failures:
        session.run_tasks([b"a", b"fail:x", b"b", b"fail:y"], fail_fast=False)
    assert sorted(failure.index for failure in failures.value.failures) == [1, 3]
    assert failures.value.tasks is not None
    assert [task.output if task else None for task in failures.value.tasks] == [
        b"a",
        b"x",
        b"b",
        b"y",
    ]


def test_input_and_informer_exceptions_propagate_as_they_are(
    v04_conn: flame.sync.Connection,
) -> None:
    v04_conn.register_application("app", {"shim": Shim.SHELL})
    session = v04_conn.create_session(flame.SessionAttributes(application="app"))

    def broken() -> Iterator[bytes]:
        yield b"a"
        raise LookupError("the inputs broke")

    with pytest.raises(LookupError, match="the inputs broke"):
        session.run_tasks(broken())

    class Failing(flame.TaskInformer):
        def on_update(self, task: flame.Task) -> None:
            raise ValueError("the informer broke")

    with pytest.raises(ValueError, match="the informer broke"):
        session.run_tasks([b"a", b"b"], informer=Failing())
    with pytest.raises(ValueError, match="the informer broke"):
        session.run_task(b"a", Failing())
    # Not an informer: refused by the async API's check, with its message.
    with pytest.raises(FlameError) as caught:
        session.run_tasks([b"a"], informer=object())  # type: ignore[arg-type]
    assert caught.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert "has no on_update()" in caught.value.message


def test_inputs_are_read_lazily_in_the_calling_thread(
    v04: ThreadedV04, v04_conn: flame.sync.Connection
) -> None:
    v04_conn.register_application("app", {"shim": Shim.SHELL})
    session = v04_conn.create_session(flame.SessionAttributes(application="app"))
    inputs = _Counted([b"hold"] * 10)
    seen: list[int] = []
    done = 0

    def observe() -> None:
        v04.wait_for_watches(3)
        # Three in flight, none finished: exactly three inputs read.
        seen.append(inputs.taken)
        time.sleep(0.05)
        seen.append(inputs.taken)
        while done < 10:  # polled: the held tasks end only when released
            v04.release()
            time.sleep(0.01)

    observer = threading.Thread(target=observe)
    with session.as_completed(inputs, concurrency=3) as finished:
        observer.start()
        for _ in finished:
            done += 1
            assert inputs.taken <= done + 3 + 1
    observer.join()
    assert seen == [3, 3]
    assert (done, inputs.taken) == (10, 10)
    assert inputs.threads == {threading.get_ident()}


def test_a_slow_body_holds_back_the_inputs(conn: flame.sync.Connection) -> None:
    session = _shell(conn)
    inputs = _Counted([b"true"] * 20)
    with session.as_completed(inputs, concurrency=2) as finished:
        next(finished)
        time.sleep(0.2)  # what is in flight has finished by now
        # Finished tasks wait for the body; the inputs wait for it too.
        assert inputs.taken <= 1 + 2
        assert len(list(finished)) == 19


def test_as_completed(conn: flame.sync.Connection) -> None:
    session = _shell(conn)
    outputs = []
    with session.as_completed((f"echo {i}".encode() for i in range(10)), concurrency=4) as done:
        for task in done:
            assert task.state is TaskState.SUCCEED
            outputs.append(task.output)
        assert done.taken == 10
        assert list(done) == []  # ended
    assert sorted(outputs) == sorted(f"{i}\n".encode() for i in range(10))


def test_as_completed_failures_and_body_errors(
    v04: ThreadedV04, v04_conn: flame.sync.Connection
) -> None:
    v04_conn.register_application("app", {"shim": Shim.SHELL})
    session = v04_conn.create_session(flame.SessionAttributes(application="app"))
    seen: list[bytes | None] = []
    with (
        pytest.raises(FlameError) as caught,
        session.as_completed([b"a", b"fail:bad", b"b"], concurrency=1) as finished,
    ):
        for task in finished:
            seen.append(task.output)
    assert "bad" in caught.value.message and seen == [b"a"]
    seen = []
    with (
        pytest.raises(flame.TaskFailures) as failures,
        session.as_completed([b"x", b"fail:y"], fail_fast=False) as finished,
    ):
        for task in finished:
            seen.append(task.output)
    assert sorted(seen, key=str) == [b"x", b"y"] and failures.value.tasks is None
    # The body's own exception leaves the with as it is, and cancels the held tasks.
    with (
        pytest.raises(KeyError),
        session.as_completed([b"quick", b"hold", b"hold"], concurrency=3) as finished,
    ):
        for _ in finished:
            v04.wait_for_watches(2)
            raise KeyError("body")
    v04.wait_for_watches(0)
    # Checks are made when as_completed is called, by the async API.
    with pytest.raises(FlameError) as caught:
        session.as_completed([b"x"], concurrency=0)
    assert caught.value.code is FlameErrorCode.INVALID_ARGUMENT


def test_watch_task_iterators(v04: ThreadedV04, v04_conn: flame.sync.Connection) -> None:
    v04_conn.register_application("app", {"shim": Shim.SHELL})
    session = v04_conn.create_session(flame.SessionAttributes(application="app"))
    held = session.create_task(b"hold")
    watcher = session.watch_task(held.id)
    assert "TaskWatcher of task" in repr(watcher)
    v04.release()
    assert [update.state for update in watcher][-1] is TaskState.SUCCEED
    assert list(watcher) == []  # iterated once
    # close() and with close the stream of a task that has not finished.
    for how in ("close", "with"):
        steps = session.create_task(b"steps")  # pending until a release, then running
        watcher = session.watch_task(steps.id)
        releaser = threading.Thread(target=lambda: (v04.wait_for_watches(1), v04.release()))
        releaser.start()
        if how == "close":
            assert next(watcher).state is TaskState.RUNNING
            watcher.close()
        else:
            with watcher as updates:
                assert next(updates).state is TaskState.RUNNING
        releaser.join()
        v04.wait_for_watches(0)
        assert list(watcher) == []
        assert session.get_task(steps.id).state is TaskState.RUNNING
        v04.release()
    with pytest.raises(FlameError) as caught:
        session.watch_task("")
    assert caught.value.code is FlameErrorCode.INVALID_ARGUMENT


def test_errors_are_those_of_the_async_api(cluster: LocalCluster, backend: str) -> None:
    async def async_errors() -> list[FlameError]:
        errors: list[FlameError] = []
        async with await flame.connect(cluster.endpoint) as conn:
            attempts: list[Any] = [
                lambda: conn.register_application("a", {"shim": Shim.LOG}),
                lambda: conn.register_application("a", {"shim": Shim.LOG}),
                lambda: conn.register_application("b", {"command": "x"}),
                lambda: conn.get_session("999"),
                lambda: conn.get_session("x"),
                lambda: conn.create_session({"application": "nope"}),
                lambda: conn.session_client("1").create_task("text"),
                lambda: conn.session_client("999").get_task("1"),
            ]
            for attempt in attempts:
                try:
                    await attempt()
                except FlameError as error:
                    errors.append(error)
        with pytest.raises(FlameError) as caught:
            await flame.connect("invalid://address")
        return [*errors, caught.value]

    expected = anyio.run(async_errors)
    errors: list[FlameError] = []
    with flame.sync.connect(cluster.endpoint, backend=backend) as conn:
        conn.unregister_application("a")
        attempts: list[Any] = [
            lambda: conn.register_application("a", {"shim": Shim.LOG}),
            lambda: conn.register_application("a", {"shim": Shim.LOG}),
            lambda: conn.register_application("b", {"command": "x"}),
            lambda: conn.get_session("999"),
            lambda: conn.get_session("x"),
            lambda: conn.create_session({"application": "nope"}),
            lambda: conn.session_client("1").create_task("text"),
            lambda: conn.session_client("999").get_task("1"),
        ]
        for attempt in attempts:
            try:
                attempt()
            except FlameError as error:
                errors.append(error)
    with pytest.raises(FlameError) as caught:
        flame.sync.connect("invalid://address", backend=backend)
    errors.append(caught.value)
    assert len(errors) == len(expected) == 8
    for got, want in zip(errors, expected, strict=True):
        assert type(got) is type(want)
        assert (got.code, got.message) == (want.code, want.message)


def test_a_backend_that_is_not_one(cluster: LocalCluster) -> None:
    with pytest.raises(FlameError) as caught:
        flame.sync.connect(cluster.endpoint, backend="curio")
    assert caught.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert "'asyncio' or 'trio'" in caught.value.message


def test_a_loop_that_cannot_start(cluster: LocalCluster) -> None:
    def no_loop() -> asyncio.AbstractEventLoop:
        raise OSError("no loop here")

    before = threading.active_count()
    with pytest.raises(FlameError) as caught:
        flame.sync.connect(cluster.endpoint, backend_options={"loop_factory": no_loop})
    assert caught.value.code is FlameErrorCode.INVALID_CONFIG
    assert "no loop here" in caught.value.message and "backend_options" in caught.value.message
    assert threading.active_count() == before


def test_uvloop_through_backend_options(cluster: LocalCluster) -> None:
    pytest.importorskip("uvloop")
    loops: list[str] = []

    class OnTheLoop(flame.TaskInformer):
        # An async informer method is awaited on the connection's loop.
        async def on_update(self, task: flame.Task) -> None:
            loops.append(type(asyncio.get_running_loop()).__module__)

    with flame.sync.connect(cluster.endpoint, backend_options={"use_uvloop": True}) as conn:
        conn.register_application("sh", {"shim": Shim.SHELL})
        session = conn.create_session({"application": "sh"})
        assert session.run_task(b"echo uv", OnTheLoop()).output == b"uv\n"
    assert loops and all(module.startswith("uvloop") for module in loops)
