"""Retention: closed sessions pruned by age or count, and deletion that frees what it held."""

from __future__ import annotations

import contextlib
import gc
import sqlite3
import subprocess
import time
import weakref
from pathlib import Path

import anyio
import pytest

from flame._proto.v04 import flame as pb
from flame._transport import Channel
from flame.local import ApplicationConfig, ClusterConfig, LocalCluster, RetentionConfig
from flame.local._model import Application, Session, SessionSpec, Shim
from flame.local._sessions import SessionManager, SessionRuntime
from flame.local._sqlite import SqliteStorage
from flame.local._storage import MemoryStorage, Storage

from .conftest import Client, wait_until
from .test_command import _first_line, _flame_local, _free_port

APP = Application(name="a", shim=Shim.LOG)


def _manager(storage: Storage | None = None) -> SessionManager:
    manager = SessionManager(
        storage if storage is not None else MemoryStorage(), capacity=4, max_message_bytes=1 << 20
    )
    manager.save_application(APP)
    return manager


def _create(manager: SessionManager) -> SessionRuntime:
    return manager.create_session(manager.next_session_id(), SessionSpec(application="a"), APP)


def _finished_session(manager: SessionManager, tasks: int = 2, close: bool = True) -> str:
    rt = _create(manager)
    for n in range(tasks):
        manager.create_task(rt, b"%d" % n)
        taken = manager.take_task(rt)
        assert taken is not None
        manager.finish_task(rt, taken, True, b"out")
    if close:
        manager.close_session(rt)
    return rt.id


def _session(manager: SessionManager, session_id: str) -> Session:
    rt = manager.runtime(session_id)
    assert rt is not None
    return rt.session


def _ids(manager: SessionManager) -> list[str]:
    return [rt.id for rt in manager.runtimes()]


def test_prune_by_count_goes_oldest_closed_first_and_spares_open_sessions() -> None:
    manager = _manager()
    first = _finished_session(manager)
    still_open = _finished_session(manager, close=False)
    pending = _create(manager)
    manager.create_task(pending, None)
    _finished_session(manager)  # the second closed: the first to go
    third = _finished_session(manager)
    # Closed first, reopened and closed again: now the newest closed.
    rt = manager.runtime(first)
    assert rt is not None
    manager.reopen_session(rt)
    manager.close_session(rt)
    assert manager.prune(time.time(), max_closed=5) == 0
    assert manager.prune(time.time(), max_closed=2) == 1
    assert _ids(manager) == [first, still_open, pending.id, third]
    assert manager.prune(time.time(), max_closed=0) == 2
    assert _ids(manager) == [still_open, pending.id]
    assert pending.session.pending == 1


def test_prune_by_age_uses_the_time_a_session_closed() -> None:
    manager = _manager()
    old = _finished_session(manager)
    young = _finished_session(manager)
    closed_at = _session(manager, young).completion_time
    assert closed_at is not None
    _session(manager, old).completion_time = closed_at - 100_000  # milliseconds
    now = closed_at / 1000
    assert manager.prune(now + 10, max_age=50) == 1
    assert _ids(manager) == [young]
    assert manager.prune(now + 10, max_age=50) == 0
    assert manager.prune(now + 60, max_age=50) == 1
    assert _ids(manager) == []


def test_prune_goes_in_batches() -> None:
    manager = _manager()
    for _ in range(7):
        _finished_session(manager, tasks=0)
    assert manager.prune(time.time(), max_closed=0, limit=3) == 3
    assert manager.prune(time.time(), max_closed=0, limit=3) == 3
    assert manager.prune(time.time(), max_closed=0, limit=3) == 1


@pytest.mark.parametrize("how", ["delete", "prune"])
@pytest.mark.parametrize("storage", ["mem", "sqlite"])
def test_a_deleted_session_frees_its_memory_and_rows(
    tmp_path: Path, how: str, storage: str
) -> None:
    store: Storage = MemoryStorage() if storage == "mem" else SqliteStorage(tmp_path / "flame.db")
    manager = _manager(store)
    try:
        kept = _finished_session(manager, tasks=3, close=False)
        gone = _finished_session(manager, tasks=3)
        watched = [weakref.ref(_session(manager, gone))]
        watched += [weakref.ref(task) for task in store.tasks(gone)]
        if how == "delete":
            rt = manager.runtime(gone)
            assert rt is not None
            manager.delete_session(rt)
            del rt
        else:
            assert manager.prune(time.time() + 60, max_age=30) == 1
        gc.collect()
        assert [ref() for ref in watched] == [None] * len(watched)
        assert store.get_session(gone) is None and list(store.tasks(gone)) == []
        assert _ids(manager) == [kept]
        if isinstance(store, SqliteStorage):
            assert store.flush()
            with contextlib.closing(sqlite3.connect(tmp_path / "flame.db")) as db:
                assert db.execute("SELECT DISTINCT session_id FROM tasks").fetchall() == [(kept,)]
                assert db.execute("SELECT id FROM sessions").fetchall() == [(kept,)]
    finally:
        manager.stop()


def test_closed_sessions_come_back_in_the_order_they_closed(tmp_path: Path) -> None:
    path = tmp_path / "flame.db"
    manager = _manager(SqliteStorage(path))
    first = _finished_session(manager)
    _finished_session(manager)
    session = _session(manager, first)
    assert session.completion_time is not None
    session.completion_time += 5000  # closed after the second
    manager.storage.save_session(session, APP)
    manager.stop()
    again = SessionManager(SqliteStorage(path), capacity=4, max_message_bytes=1 << 20)
    try:
        assert again.prune(time.time(), max_closed=1) == 1
        assert _ids(again) == [first]
    finally:
        again.stop()


# --------------------------------------------------------------------------
# The cluster prunes by itself


async def test_a_cluster_with_retention_prunes_closed_sessions(tmp_path: Path) -> None:
    path = tmp_path / "flame.db"
    config = ClusterConfig(
        slots=1,
        storage=f"sqlite://{path}",
        applications=[ApplicationConfig("ping")],
        retention=RetentionConfig(max_closed_sessions=2),
    )
    async with LocalCluster(config) as cluster, await Channel.connect(cluster.endpoint) as channel:
        client = Client(channel)
        busy = await client.session("ping")
        closed = []
        for _ in range(5):
            session_id = await client.session("ping")
            await client.run(session_id, b"x")
            await client.call("close_session", pb.CloseSessionRequest(session_id=session_id))
            closed.append(session_id)
        await client.task(busy, b"y")

        async def pruned() -> bool:
            listed = await client.call("list_session", pb.ListSessionRequest())
            return [s.metadata.id for s in listed.sessions] == [busy, *closed[-2:]]

        await wait_until(pruned)
        assert await client.counters(busy) == (0, 0, 1, 0)

    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT id FROM sessions ORDER BY id").fetchall()
        assert [str(row[0]) for row in rows] == [busy, *closed[-2:]]
        tasks = db.execute("SELECT DISTINCT session_id FROM tasks ORDER BY session_id").fetchall()
        assert [str(row[0]) for row in tasks] == [busy, *closed[-2:]]


async def test_flame_local_prunes_by_age(tmp_path: Path) -> None:
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    config = tmp_path / "flame-conf.yaml"
    config.write_text(f"endpoint: {endpoint}\napplications: [{{name: ping}}]\n")
    command = [
        *_flame_local(),
        "--config",
        str(config),
        "--slots",
        "1",
        "--retention-max-age",
        "1s",
    ]
    process = await anyio.open_process(command, stderr=subprocess.DEVNULL)
    try:
        await _first_line(process)
        async with await Channel.connect(endpoint) as channel:
            client = Client(channel)
            kept = await client.session("ping")
            gone = await client.session("ping")
            await client.run(gone, b"x")
            await client.call("close_session", pb.CloseSessionRequest(session_id=gone))

            async def pruned() -> bool:
                listed = await client.call("list_session", pb.ListSessionRequest())
                return [s.metadata.id for s in listed.sessions] == [kept]

            await wait_until(pruned)
            await client.refused(
                "get_session", pb.GetSessionRequest(session_id=gone), "NOT_FOUND", "does not exist"
            )
    finally:
        process.terminate()
        with anyio.fail_after(30):
            await process.wait()
        await process.aclose()
