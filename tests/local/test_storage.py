"""Storage: SqliteStorage against MemoryStorage, and a cluster restarted on its file."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flame._errors import FlameError, FlameErrorCode
from flame._proto.v04 import flame as pb
from flame._transport import Channel
from flame.local import ApplicationConfig, ClusterConfig, LocalCluster
from flame.local._model import (
    Application,
    Event,
    Session,
    SessionSpec,
    SessionState,
    Shim,
    Task,
    TaskState,
)
from flame.local._sessions import SessionManager
from flame.local._sqlite import ID_BLOCK, SqliteStorage
from flame.local._storage import MemoryStorage, Storage

from .conftest import Client, wait_until
from .test_command import _first_line, _flame_local, _free_port

# --------------------------------------------------------------------------
# The two stores give the same answers


def _app(name: str, shim: Shim = Shim.LOG, command: str | None = None) -> Application:
    return Application(
        name=name,
        shim=shim,
        command=command,
        arguments=("-x",),
        environments=(("A", "1"), ("A", "2")),
        creation_time=7,
    )


def _session(session_id: str, app: str) -> Session:
    return Session(
        session_id,
        SessionSpec(application=app, slots=1, common_data=b"common", max_instances=3),
        creation_time=11,
    )


def _task(session_id: str, task_id: int, data: bytes | None) -> Task:
    return Task(task_id, session_id, data, 13)


NAMES = ["a", "b", "c"]
SESSION_NAMES = ["x", "y", "z"]

#: One operation on a store, as the session manager would make it. Indexes
#: pick among the sessions and tasks that exist (modulo their number), so
#: most operations hit something.
OPS = st.one_of(
    st.tuples(st.just("save_app"), st.sampled_from(NAMES), st.sampled_from(list(Shim))),
    st.tuples(st.just("delete_app"), st.sampled_from(NAMES)),
    st.tuples(st.just("create_session"), st.sampled_from(NAMES)),
    # v0.6: the client names its sessions, and may name one that was deleted.
    st.tuples(
        st.just("create_named_session"), st.sampled_from(NAMES), st.sampled_from(SESSION_NAMES)
    ),
    st.tuples(st.just("close_session"), st.integers(0, 5)),
    st.tuples(st.just("session_event"), st.integers(0, 5), st.integers(1000, 1002)),
    st.tuples(st.just("delete_session"), st.integers(0, 5)),
    st.tuples(
        st.just("create_task"), st.integers(0, 5), st.one_of(st.none(), st.binary(max_size=20))
    ),
    st.tuples(
        st.just("finish_task"),
        st.integers(0, 5),
        st.integers(0, 10),
        st.sampled_from(list(TaskState)),
        st.one_of(st.none(), st.binary(max_size=20)),
        st.one_of(st.none(), st.text(max_size=10)),
    ),
    st.tuples(st.just("delete_task"), st.integers(0, 5), st.integers(0, 10)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("reopen")),
)


def _pick(items: list[Any], index: int) -> Any:
    return items[index % len(items)] if items else None


def _apply(store: Storage, op: tuple[Any, ...]) -> Any:
    """Do ``op`` on ``store``; what it answered, for comparison."""
    kind = op[0]
    session_ids = [s.id for s in store.sessions()]
    if kind == "save_app":
        app = _app(op[1], op[2], command=f"cmd-{op[2].value}")
        store.save_application(app)
        return None
    if kind == "delete_app":
        store.delete_application(op[1])
        return None
    if kind in ("create_session", "create_named_session"):
        app = store.get_application(op[1])
        if app is None:
            return "no app"
        if kind == "create_session":
            session_id = str(store.next_session_id())
        else:
            session_id = op[2]
            if store.get_session(session_id) is not None:
                return "exists"
        store.save_session(_session(session_id, op[1]), app)
        return session_id
    session_id = _pick(session_ids, op[1]) if len(op) > 1 else None
    if session_id is None:
        return None
    session = store.get_session(session_id)
    app = store.session_application(session_id)
    assert session is not None and app is not None
    if kind == "close_session":
        session.state = SessionState.CLOSED
        session.completion_time = 99
        session.cancelled += 1
        store.save_session(session, app)
        return session_id
    if kind == "session_event":
        session.events.append(Event(op[2], f"event {op[2]}", 17))
        store.save_session(session, app)
        return session_id
    if kind == "delete_session":
        store.delete_session(session_id)
        return session_id
    if kind == "create_task":
        task_id = store.next_task_id(session_id)
        store.save_task(_task(session_id, task_id, op[2]))
        return task_id
    if kind in ("finish_task", "delete_task"):
        task_ids = [task.id for task in store.tasks(session_id)]
        task_id = _pick(task_ids, op[2])
        if task_id is None:
            return None
        if kind == "delete_task":
            store.delete_task(session_id, task_id)
            return task_id
        task = store.get_task(session_id, task_id)
        assert task is not None
        task.state = op[3]
        task.running_time = 100
        task.completion_time = 123
        task.output = op[4]
        task.message = op[5]
        store.save_task(task)
        return task_id
    raise AssertionError(kind)


def _session_fields(session: Session | None) -> Any:
    if session is None:
        return None
    events = [(e.code, e.message, e.creation_time) for e in session.events]
    return (
        session.id,
        session.spec,
        session.state,
        session.creation_time,
        session.completion_time,
        session.counters(),
        events,
    )


def _contents(store: Storage) -> Any:
    """Every answer the store gives, for lookups that hit and miss."""
    ids = [s.id for s in store.sessions()]
    return (
        # Applications come in no promised order (a Flame cluster lists them
        # as its store gives them).
        sorted(store.applications(), key=lambda app: app.name),
        {name: store.get_application(name) for name in NAMES},
        [_session_fields(s) for s in store.sessions()],
        {
            sid: (
                _session_fields(store.get_session(sid)),
                store.session_application(sid),
                [t.fields() for t in store.tasks(sid)],
                [t.fields() if (t := store.get_task(sid, tid)) else None for tid in range(0, 12)],
            )
            for sid in [*ids, "0", "nope", *SESSION_NAMES]
        },
    )


#: Where every sequence starts: two applications, two sessions, some tasks,
#: so that the operations drawn next find something to work on.
START: list[tuple[Any, ...]] = [
    ("save_app", "a", Shim.LOG),
    ("save_app", "b", Shim.SHELL),
    ("create_session", "a"),
    ("create_named_session", "b", "x"),
    *[("create_task", 0, bytes([n])) for n in range(3)],
    ("create_task", 1, None),
]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(drawn=st.lists(OPS, max_size=40))
def test_sqlite_and_memory_give_the_same_answers(drawn: list[tuple[Any, ...]]) -> None:
    ops = START + drawn
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "flame.db"
        memory = MemoryStorage()
        sqlite = SqliteStorage(path)
        try:
            for op in ops:
                if op[0] == "flush":
                    sqlite.flush()
                    continue
                if op[0] == "reopen":
                    # A restart: the next store reads only what the file holds.
                    sqlite.close()
                    sqlite = SqliteStorage(path)
                else:
                    assert _apply(memory, op) == _apply(sqlite, op), op
                assert _contents(memory) == _contents(sqlite), op
            sqlite.close()
            sqlite = SqliteStorage(path)
            assert _contents(memory) == _contents(sqlite)
            # The counters went on where they stopped, for sessions and tasks.
            assert memory.next_session_id() == sqlite.next_session_id()
            for session in memory.sessions():
                assert memory.next_task_id(session.id) == sqlite.next_task_id(session.id)
            # Nothing is left behind in the file: a deleted session's tasks go too.
            sqlite.close()
            rows = dict(_reader(path))
            assert rows["sessions"] == len(list(memory.sessions()))
            assert rows["tasks"] == sum(len(list(memory.tasks(s.id))) for s in memory.sessions())
        finally:
            sqlite.close()


# --------------------------------------------------------------------------
# SqliteStorage itself


def _reader(path: Path) -> Iterator[tuple[str, int]]:
    """What another process would find in the file: table, rows."""
    with sqlite3.connect(path) as db:
        for table in ("applications", "sessions", "tasks"):
            yield table, db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_the_file_is_wal_and_holds_readable_records(tmp_path: Path) -> None:
    path = tmp_path / "flame.db"
    store = SqliteStorage(path)
    try:
        app = _app("a")
        store.save_application(app)
        session_id = str(store.next_session_id())
        store.save_session(_session(session_id, "a"), app)
        task = _task(session_id, store.next_task_id(session_id), b"in")
        task.state = TaskState.FAILED
        task.message = "why"
        store.save_task(task)
        store.flush()
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("PRAGMA user_version").fetchone()[0] == 3
            row = db.execute("SELECT session_id, id, state, input, message FROM tasks").fetchone()
            assert row == (session_id, 1, 3, b"in", "why")
            (record,) = db.execute("SELECT record FROM applications").fetchone()
            assert json.loads(record)["environments"] == [["A", "1"], ["A", "2"]]
            assert db.execute("SELECT value FROM meta WHERE key = 'wire'").fetchone() == ("v0.4",)
        assert store.get_task(session_id, 1) is task
    finally:
        store.close()
    reopened = SqliteStorage(path)
    try:
        again = reopened.get_task(session_id, 1)
        assert again is not None and again.fields() == task.fields()
        assert reopened.get_application("a") == app
    finally:
        reopened.close()


def test_changes_are_committed_in_groups(tmp_path: Path) -> None:
    path = tmp_path / "flame.db"
    store = SqliteStorage(path)
    try:
        store.save_application(_app("a"))
        assert store.flush()
        assert not store.unwritten
        store.save_application(_app("b"))
        assert store.unwritten
        # Not committed yet: another process reading the file does not find it.
        assert dict(_reader(path))["applications"] == 1
        assert store.flush()
        assert dict(_reader(path))["applications"] == 2
    finally:
        store.close()


async def test_write_behind_commits_soon_without_being_asked(tmp_path: Path) -> None:
    path = tmp_path / "flame.db"
    store = SqliteStorage(path, window=0.01)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.write_behind)
            store.save_application(_app("a"))
            assert dict(_reader(path))["applications"] == 0
            await wait_until(lambda: dict(_reader(path))["applications"] == 1, limit=5)
            assert not store.unwritten
            store.delete_application("a")
            await wait_until(lambda: dict(_reader(path))["applications"] == 0, limit=5)
            tg.cancel_scope.cancel()
    finally:
        store.close()


def test_close_writes_what_is_left_and_refuses_changes_after(tmp_path: Path) -> None:
    path = tmp_path / "flame.db"
    store = SqliteStorage(path)
    store.save_application(_app("a"))
    store.close()
    store.close()  # twice is harmless
    assert dict(_reader(path))["applications"] == 1
    with pytest.raises(FlameError, match="closed"):
        store.save_application(_app("b"))


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("missing/flame.db", ["does not exist", "mkdir -p"]),
        ("", ["path of a database file"]),
        (":memory:", ["path of a database file"]),
        (".", ["is a directory"]),
        ("junk.db", ["cannot use it", "not a database"]),
    ],
)
def test_bad_paths_say_what_to_do(tmp_path: Path, name: str, words: list[str]) -> None:
    (tmp_path / "junk.db").write_bytes(b"this is no database, " * 100)
    path = name if name in ("", ":memory:") else str(tmp_path / name)
    with pytest.raises(FlameError) as info:
        SqliteStorage(path)
    assert info.value.code is FlameErrorCode.INVALID_CONFIG
    for word in words:
        assert word in info.value.message, info.value.message


def test_a_file_from_a_newer_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "flame.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(FlameError, match="newer flame-sdk"):
        SqliteStorage(path)


# --------------------------------------------------------------------------
# Recovery in the session manager


def _manager(path: Path) -> SessionManager:
    return SessionManager(SqliteStorage(path), capacity=4, max_message_bytes=1 << 20)


def test_the_manager_comes_back_with_pending_work_in_order_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "flame.db"
    manager = _manager(path)
    app = Application(name="a", shim=Shim.LOG)
    manager.save_application(app)
    rt = manager.create_session(manager.next_session_id(), SessionSpec(application="a"), app)
    sid = rt.id
    tasks = [manager.create_task(rt, bytes([i])) for i in range(5)]
    first = manager.take_task(rt)
    second = manager.take_task(rt)
    assert first is not None and second is not None
    manager.finish_task(rt, first, True, b"done")
    manager.delete_task(rt, tasks[3])  # pending ones: 3 and 5
    crt = manager.create_session(manager.next_session_id(), SessionSpec(application="a"), app)
    manager.create_task(crt, None)
    taken = manager.take_task(crt)
    assert taken is not None
    manager.finish_task(crt, taken, False, None, "no")
    manager.close_session(crt)
    # The update comes after the sessions: they keep the application they were made with.
    manager.save_application(Application(name="a", shim=Shim.SHELL))
    assert rt.session.running == 1
    manager.stop()
    # Stopped: what the executors say now is not kept.
    manager.finish_task(rt, second, True, b"too late")
    with pytest.raises(FlameError, match="stopping"):
        manager.create_task(rt, None)

    again = _manager(path)
    try:
        rt = again.runtime(sid)
        assert rt is not None and rt.is_open
        # Task 2 was running: it is pending again, first in line.
        assert [task.id for task in rt.pending] == [2, 3, 5]
        assert [task.state for task in rt.pending] == [TaskState.PENDING] * 3
        assert rt.session.counters() == (3, 0, 1, 0, 0)
        done = again.get_task(rt, 1)
        assert done is not None and done.output == b"done"
        rerun = again.get_task(rt, 2)
        assert rerun is not None and rerun.output is None
        assert again.get_task(rt, 4) is None
        assert rt.pending[1].fields() == tasks[2].fields()
        assert rt.app.shim is Shim.LOG
        stored = again.application("a")
        assert stored is not None and stored.shim is Shim.SHELL

        crt = again.runtime(crt.id)
        assert crt is not None and not crt.is_open
        assert crt.session.counters() == (0, 0, 0, 1, 0)
        failed = again.get_task(crt, 1)
        assert failed is not None and failed.message == "no"
        assert [r.id for r in again.runtimes()] == [sid, crt.id]
        # Ids go on where they stopped.
        assert again.next_session_id() == "3"
        assert again.create_task(rt, None).id == 6
    finally:
        again.stop()


# --------------------------------------------------------------------------
# A cluster stopped and started again on the same file


def _config(tmp_path: Path) -> ClusterConfig:
    return ClusterConfig(
        slots=1,
        storage=f"sqlite://{tmp_path / 'flame.db'}",
        applications=[
            ApplicationConfig("ping"),
            ApplicationConfig("sh", shim="Shell", working_directory=str(tmp_path)),
        ],
    )


@contextlib.asynccontextmanager
async def _within(seconds: float) -> AsyncIterator[None]:
    # A stop that leaves a watcher hanging fails the test instead of hanging it.
    with anyio.fail_after(seconds):
        yield


# Appends a line to `runs` each time it starts, then waits for the file `go`.
BLOCKER = b"echo run >> runs; while [ ! -f go ]; do sleep 0.02; done; echo two"


async def test_a_cluster_restarted_on_its_file_carries_on(tmp_path: Path) -> None:
    config = _config(tmp_path)
    seen: list[pb.TaskState | FlameError] = []

    async def watch(
        endpoint: str, task_id: str, session_id: str, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        # Its own channel, which outlives the cluster.
        async with await Channel.connect(endpoint) as channel:
            request = pb.WatchTaskRequest(task_id=task_id, session_id=session_id)
            try:
                stub = pb.FrontendStub(channel)
                async with channel.stream(stub.watch_task, request) as updates:
                    async for update in updates:
                        seen.append(update.status.state)
                        if len(seen) == 1:
                            task_status.started()
            except FlameError as error:
                seen.append(error)

    # The task group outlives the cluster: the watcher sees it stop.
    async with (
        _within(30),
        anyio.create_task_group() as tg,
        LocalCluster(config) as cluster,
        await Channel.connect(cluster.endpoint) as channel,
    ):
        client = Client(channel)
        done = await client.session("ping")
        for data in (b"a", b"b"):
            assert (await client.run(done, data)).status.state == pb.TaskState.Succeed
        await client.call("close_session", pb.CloseSessionRequest(session_id=done))

        busy = await client.session("sh")
        first = await client.run(busy, b"echo one")
        assert first.spec.output == b"one\n"
        blocked = await client.task(busy, BLOCKER)
        queued = [await client.task(busy, f"echo {n}".encode()) for n in (3, 4)]
        await wait_until(lambda: (tmp_path / "runs").exists())
        assert await client.counters(busy) == (2, 1, 1, 0)
        await tg.start(watch, cluster.endpoint, blocked, busy)
    # The watcher was not told the task failed, which it did not: it ran again.
    running, stopped = seen
    assert running == pb.TaskState.Running
    assert isinstance(stopped, FlameError), stopped
    assert stopped.code is FlameErrorCode.UNAVAILABLE, stopped
    assert "the cluster is stopping" in stopped.message, stopped.message
    assert (tmp_path / "runs").read_text() == "run\n"
    (tmp_path / "go").touch()

    async with (
        _within(30),
        LocalCluster(config) as cluster,
        await Channel.connect(cluster.endpoint) as channel,
    ):
        client = Client(channel)
        listed = await client.call("list_application", pb.ListApplicationRequest())
        assert [a.metadata.name for a in listed.applications] == ["ping", "sh"]
        sessions = await client.call("list_session", pb.ListSessionRequest())
        states = {s.metadata.id: s.status.state for s in sessions.sessions}
        assert states == {done: pb.SessionState.Closed, busy: pb.SessionState.Open}
        assert await client.counters(done) == (0, 0, 2, 0)
        old = await client.call("get_task", pb.GetTaskRequest(task_id="2", session_id=done))
        assert (old.spec.input, old.status.state) == (b"b", pb.TaskState.Succeed)
        assert old.status.completion_time is not None
        await client.refused(
            "create_task",
            pb.CreateTaskRequest(task=pb.TaskSpec(session_id=done)),
            "FAILED_PRECONDITION",
            "closed",
        )

        # The task that was running runs again, and those queued behind it after.
        rerun = (await client.watch(busy, blocked))[-1]
        assert (rerun.status.state, rerun.spec.output) == (pb.TaskState.Succeed, b"two\n")
        assert (tmp_path / "runs").read_text() == "run\nrun\n"
        outputs = [(await client.watch(busy, task_id))[-1].spec.output for task_id in queued]
        assert outputs == [b"3\n", b"4\n"]
        assert await client.counters(busy) == (0, 0, 4, 0)

        # Ids go on.
        assert await client.task(busy, b"echo 5") == "5"
        assert await client.session("ping") == str(int(busy) + 1)


async def test_a_config_application_changed_between_runs_is_updated(tmp_path: Path) -> None:
    config = _config(tmp_path)
    async with LocalCluster(config) as cluster, await Channel.connect(cluster.endpoint) as channel:
        client = Client(channel)
        assert (await client.register("extra", pb.ApplicationSpec())).return_code == 0
    changed = ClusterConfig(
        slots=1,
        storage=config.storage,
        applications=[ApplicationConfig("sh", shim="Shell", command="/bin/bash")],
    )
    async with LocalCluster(changed) as cluster, await Channel.connect(cluster.endpoint) as channel:
        client = Client(channel)
        listed = await client.call("list_application", pb.ListApplicationRequest())
        specs = {a.metadata.name: a.spec.command for a in listed.applications}
        assert specs == {"ping": None, "sh": "/bin/bash", "extra": None}


async def test_a_cluster_on_a_path_it_cannot_use_does_not_start(tmp_path: Path) -> None:
    config = ClusterConfig(slots=1, storage=f"sqlite://{tmp_path / 'nowhere' / 'flame.db'}")
    with pytest.raises(FlameError) as info:
        async with LocalCluster(config):
            pass
    assert info.value.code is FlameErrorCode.INVALID_CONFIG
    assert "does not exist" in info.value.message
    assert "mkdir -p" in info.value.message


async def test_a_watcher_of_a_cluster_in_memory_is_told_it_stopped(tmp_path: Path) -> None:
    config = ClusterConfig(
        slots=1, applications=[ApplicationConfig("sh", shim="Shell")], storage="mem"
    )
    seen: list[pb.TaskState | FlameError] = []

    async def watch(
        endpoint: str, task_id: str, session_id: str, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        async with await Channel.connect(endpoint) as channel:
            client = Client(channel)
            try:
                # Pending: the watch sends nothing until the task moves.
                task_status.started()
                seen.extend(t.status.state for t in await client.watch(session_id, task_id))
            except FlameError as error:
                seen.append(error)

    async with (
        _within(30),
        anyio.create_task_group() as tg,
        LocalCluster(config) as cluster,
        await Channel.connect(cluster.endpoint) as channel,
    ):
        client = Client(channel)
        session_id = await client.session("sh")
        await client.task(session_id, b"sleep 30")
        waiting = await client.task(session_id, b"echo never")
        await tg.start(watch, cluster.endpoint, waiting, session_id)
        # The watch is in place once the cluster has answered a call made after it.
        await wait_until(lambda: client.counters(session_id))
        await anyio.sleep(0.1)
    (stopped,) = seen
    assert isinstance(stopped, FlameError), stopped
    assert stopped.code is FlameErrorCode.UNAVAILABLE, stopped
    assert "the cluster is stopping; task 2 of session 1" in stopped.message


# --------------------------------------------------------------------------
# flame local killed, and started again


async def test_flame_local_killed_comes_back_from_its_file(tmp_path: Path) -> None:
    port = _free_port()
    database = tmp_path / "state" / "flame.db"
    database.parent.mkdir()
    config = tmp_path / "flame-conf.yaml"
    config.write_text(
        f"endpoint: http://127.0.0.1:{port}\n"
        f"storage: sqlite://{database}\n"
        "applications:\n"
        f"  - {{name: sh, shim: Shell, working_directory: {tmp_path}}}\n"
    )
    command = [*_flame_local(), "--config", str(config), "--slots", "1"]
    endpoint = f"http://127.0.0.1:{port}"

    def stored_state(task_id: int) -> int | None:
        with contextlib.closing(sqlite3.connect(database)) as db:
            row = db.execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return None if row is None else int(row[0])

    process = await anyio.open_process(command, stderr=subprocess.DEVNULL)
    try:
        assert (await _first_line(process)).endswith(endpoint)
        async with await Channel.connect(endpoint) as channel:
            client = Client(channel)
            session_id = await client.session("sh")
            assert (await client.run(session_id, b"echo one")).spec.output == b"one\n"
            blocked = await client.task(session_id, BLOCKER)
            # Committed as Running within the next group.
            await wait_until(lambda: stored_state(2) == pb.TaskState.Running)
        process.kill()  # no time to write anything more
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()
    (tmp_path / "go").touch()  # the orphaned shell ends too

    process = await anyio.open_process(command, stderr=subprocess.DEVNULL)
    try:
        await _first_line(process)
        async with await Channel.connect(endpoint) as channel:
            client = Client(channel)
            rerun = (await client.watch(session_id, blocked))[-1]
            assert (rerun.status.state, rerun.spec.output) == (pb.TaskState.Succeed, b"two\n")
            assert (tmp_path / "runs").read_text() == "run\nrun\n"
            assert await client.counters(session_id) == (0, 0, 2, 0)
            last = await client.run(session_id, b"echo three")
            # Ids go on after those reserved before the crash, which may have been handed out.
            assert (last.metadata.id, last.spec.output) == (str(ID_BLOCK + 1), b"three\n")
        # Stopping writes what the last group had not.
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()
    assert stored_state(ID_BLOCK + 1) == pb.TaskState.Succeed
