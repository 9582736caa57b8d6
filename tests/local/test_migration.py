"""Stores written before the cluster spoke v0.6 are upgraded, losing nothing; one wire a file."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from flame._errors import FlameError, FlameErrorCode
from flame._proto.v04 import flame as pb
from flame._transport import Channel
from flame.local import ClusterConfig, LocalCluster
from flame.local._model import Shim, TaskState
from flame.local._sqlite import SqliteStorage

from .conftest import Client

# The layout-2 tables, as flame-sdk wrote them before layout 3 (v0.4's
# messages, encoded, under integer ids). Layout 1 is the same without
# reserved_task_ids.
LAYOUT_2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE applications (name TEXT PRIMARY KEY, message BLOB NOT NULL);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    message BLOB NOT NULL,
    application BLOB NOT NULL,
    last_task INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE tasks (
    session_id INTEGER NOT NULL,
    id INTEGER NOT NULL,
    message BLOB NOT NULL,
    PRIMARY KEY (session_id, id)
) WITHOUT ROWID;
CREATE TABLE reserved_task_ids (session_id INTEGER PRIMARY KEY, last INTEGER NOT NULL);
"""

T0 = 1_700_000_000  # seconds, as v0.4 counted


def _app(name: str, shim: pb.Shim, **spec: object) -> pb.Application:
    return pb.Application(
        metadata=pb.Metadata(id=name, name=name),
        spec=pb.ApplicationSpec(shim=shim, **spec),  # type: ignore[arg-type]
        status=pb.ApplicationStatus(state=pb.ApplicationState.Enabled, creation_time=T0),
    )


def _task(session_id: int, task_id: int, state: pb.TaskState, **fields: object) -> bytes:
    done = state in (pb.TaskState.Succeed, pb.TaskState.Failed)
    return bytes(
        pb.Task(
            metadata=pb.Metadata(id=str(task_id), name=str(task_id)),
            spec=pb.TaskSpec(session_id=str(session_id), **fields),  # type: ignore[arg-type]
            status=pb.TaskStatus(
                state=state,
                creation_time=T0 + task_id,
                completion_time=T0 + 100 + task_id if done else None,
            ),
        )
    )


def _old_file(path: Path, layout: int = 2) -> None:
    """A store as flame-sdk wrote it at ``layout``: two applications, two sessions, tasks."""
    ping = _app("ping", pb.Shim.Log)
    sh = _app(
        "sh",
        pb.Shim.Shell,
        command="/bin/sh",
        arguments=["-e"],
        environments=["A=1", "B=x=y"],
        working_directory="/tmp",
        url="file:///x",
    )
    schema = LAYOUT_2 if layout == 2 else LAYOUT_2.split("CREATE TABLE reserved_task_ids")[0]
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(schema)
        db.execute(f"PRAGMA user_version={layout}")
        db.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [("last_session", 3)] + ([("reserved_sessions", 102)] if layout == 2 else []),
        )
        db.executemany(
            "INSERT INTO applications VALUES (?, ?)", [("ping", bytes(ping)), ("sh", bytes(sh))]
        )
        open_session = pb.Session(
            metadata=pb.Metadata(id="1", name="1"),
            spec=pb.SessionSpec(application="sh", slots=2, common_data=b"common"),
            status=pb.SessionStatus(
                state=pb.SessionState.Open, creation_time=T0, pending=1, running=1, succeed=1
            ),
        )
        closed = pb.Session(
            metadata=pb.Metadata(id="3", name="3"),
            spec=pb.SessionSpec(application="ping", slots=1),
            status=pb.SessionStatus(
                state=pb.SessionState.Closed,
                creation_time=T0 + 1,
                completion_time=T0 + 200,
                failed=1,
            ),
        )
        db.executemany(
            "INSERT INTO sessions VALUES (?, ?, ?, ?)",
            [(1, bytes(open_session), bytes(sh), 3), (3, bytes(closed), bytes(ping), 1)],
        )
        db.executemany(
            "INSERT INTO tasks VALUES (?, ?, ?)",
            [
                (1, 1, _task(1, 1, pb.TaskState.Succeed, input=b"echo a", output=b"a\n")),
                (1, 2, _task(1, 2, pb.TaskState.Running, input=b"sleep 1")),
                (1, 3, _task(1, 3, pb.TaskState.Pending, input=b"echo c")),
                (3, 1, _task(3, 1, pb.TaskState.Failed, output=b"it broke")),
            ],
        )
        if layout == 2:
            db.executemany("INSERT INTO reserved_task_ids VALUES (?, ?)", [(1, 100), (3, 100)])
        db.commit()


def _dump(path: Path) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master ORDER BY name")]
        rows: list[tuple[object, ...]] = [("user_version", *db.execute("PRAGMA user_version"))]
        for table in tables:
            if not table.startswith("sqlite_"):
                rows += [(table, *row) for row in db.execute(f"SELECT * FROM {table}")]
        return rows


@pytest.mark.parametrize("layout", [1, 2])
def test_an_old_store_is_upgraded_with_everything_it_held(tmp_path: Path, layout: int) -> None:
    path = tmp_path / "flame.db"
    _old_file(path, layout)
    store = SqliteStorage(path)
    try:
        ping, sh = store.applications()
        assert (ping.name, ping.shim, ping.creation_time) == ("ping", Shim.LOG, T0 * 1000)
        assert (sh.shim, sh.command, sh.arguments) == (Shim.SHELL, "/bin/sh", ("-e",))
        assert sh.environments == (("A", "1"), ("B", "x=y"))
        assert (sh.working_directory, sh.url) == ("/tmp", "file:///x")
        one, three = store.sessions()
        assert (one.id, three.id) == ("1", "3")
        assert (one.spec.application, one.spec.slots, one.spec.common_data) == ("sh", 2, b"common")
        assert one.creation_time == T0 * 1000 and one.completion_time is None
        assert three.completion_time == (T0 + 200) * 1000
        assert store.session_application("1") == sh
        tasks = {(t.session_id, t.id): t for sid in ("1", "3") for t in store.tasks(sid)}
        assert sorted(tasks) == [("1", 1), ("1", 2), ("1", 3), ("3", 1)]
        done = tasks["1", 1]
        assert (done.state, done.input, done.output) == (TaskState.SUCCEED, b"echo a", b"a\n")
        assert (done.creation_time, done.completion_time) == ((T0 + 1) * 1000, (T0 + 101) * 1000)
        assert tasks["1", 2].state is TaskState.RUNNING
        assert tasks["3", 1].output == b"it broke"
        # Ids go on after those handed out, and after those reserved.
        assert store.next_session_id() == (103 if layout == 2 else 4)
        assert store.next_task_id("1") == (101 if layout == 2 else 4)
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
        assert db.execute("SELECT value FROM meta WHERE key = 'wire'").fetchone() == ("v0.4",)


async def test_a_v04_cluster_serves_an_upgraded_store_as_it_served_it_before(
    tmp_path: Path,
) -> None:
    path = tmp_path / "flame.db"
    _old_file(path)
    config = ClusterConfig(slots=2, storage=f"sqlite://{path}")
    async with LocalCluster(config) as cluster, await Channel.connect(cluster.endpoint) as channel:
        client = Client(channel)
        session = await client.call("get_session", pb.GetSessionRequest(session_id="1"))
        assert session.status.creation_time == T0  # seconds, as before
        assert session.spec.common_data == b"common"
        failed = await client.call("get_task", pb.GetTaskRequest(task_id="1", session_id="3"))
        assert (failed.status.state, failed.spec.output) == (pb.TaskState.Failed, b"it broke")
        assert failed.status.completion_time == T0 + 101
        # The task that was running runs again, then the pending one, in the shell.
        rerun = (await client.watch("1", "2"))[-1]
        assert rerun.status.state == pb.TaskState.Succeed
        echoed = (await client.watch("1", "3"))[-1]
        assert echoed.spec.output == b"c\n"
        assert await client.counters("1") == (0, 0, 3, 0)
        assert await client.session("ping") == "103"


async def test_an_old_store_is_left_as_it_was_by_a_v06_cluster(tmp_path: Path) -> None:
    path = tmp_path / "flame.db"
    _old_file(path)
    before = _dump(path)
    config = ClusterConfig(slots=1, storage=f"sqlite://{path}", wire="v0.6")
    with pytest.raises(FlameError) as info:
        async with LocalCluster(config):
            pass
    assert info.value.code is FlameErrorCode.INVALID_CONFIG
    for words in ("v0.4 cluster", "speaks v0.6", "--wire v0.4", "another file"):
        assert words in info.value.message, info.value.message
    assert _dump(path) == before


async def test_a_store_serves_the_wire_that_made_it(tmp_path: Path) -> None:
    path = tmp_path / "flame.db"
    SqliteStorage(path, wire="v0.6").close()
    with pytest.raises(FlameError) as info:
        SqliteStorage(path, wire="v0.4")
    assert "speaks v0.6, and this one speaks v0.4" in info.value.message
    assert "--wire v0.6" in info.value.message
    SqliteStorage(path, wire="v0.6").close()


def test_an_upgrade_that_fails_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "flame.db"
    _old_file(path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE tasks SET message = ? WHERE id = 3", (b"\xff\xff\xff",))
        db.commit()
    before = _dump(path)
    with pytest.raises(FlameError) as info:
        SqliteStorage(path)
    assert info.value.code is FlameErrorCode.INVALID_CONFIG
    assert "cannot upgrade it from layout 2" in info.value.message
    assert "left as it was" in info.value.message
    assert _dump(path) == before
