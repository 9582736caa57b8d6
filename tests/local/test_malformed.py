"""Malformed requests: refused before anything acts on them, and never stored.

A request whose fields arrive with wire types their types cannot have is
refused with INVALID_ARGUMENT naming the field, by every method; the cluster
stores nothing of it, serves on, and a sqlite-backed one keeps every task it
acknowledged.
"""

from __future__ import annotations

import logging
import signal
import subprocess
from pathlib import Path

import anyio
import pytest

from flame._proto.v04 import flame as pb
from flame._transport import Channel
from flame.local._model import Application, Shim

from .conftest import Client, raw, wait_until
from .test_command import _first_line, _flame_local, _free_port

#: RegisterApplication{name: "a", application: {command: <varint 1>}}.
BAD_REGISTER = bytes([0x0A, 0x01, 0x61, 0x12, 0x02, 0x18, 0x01])


async def test_a_wrong_typed_request_is_refused_and_stores_nothing(client: Client) -> None:
    await client.refused(
        "register_application",
        raw(pb.RegisterApplicationRequest, BAD_REGISTER),
        "INVALID_ARGUMENT",
        "RegisterApplicationRequest.application.command should be a string",
        "varint",
    )
    listed = await client.call("list_application", pb.ListApplicationRequest())
    assert [a.metadata.name for a in listed.applications] == ["ping"]
    assert (await client.register("a", pb.ApplicationSpec(command="x"))).return_code == 0


@pytest.mark.parametrize(
    ("method", "cls", "data", "field"),
    [
        ("create_task", pb.CreateTaskRequest, b"\x08\x01", "CreateTaskRequest.task"),
        ("create_task", pb.CreateTaskRequest, b"\x0a\x02\x18\x01", "TaskSpec.input"),
        ("get_task", pb.GetTaskRequest, b"\x0a\x011\x10\x01", "GetTaskRequest.session_id"),
        ("watch_task", pb.WatchTaskRequest, b"\x0d\x00\x00\x00\x00", "WatchTaskRequest.task_id"),
        ("create_session", pb.CreateSessionRequest, b"\x0a\x02\x1a\x00", "session.slots"),
        ("close_session", pb.CloseSessionRequest, b"\x08\x01", "CloseSessionRequest.session_id"),
    ],
)
async def test_every_method_refuses_a_field_of_the_wrong_wire_type(
    client: Client, method: str, cls: type, data: bytes, field: str
) -> None:
    session_id = await client.session()
    await client.refused(method, raw(cls, data), "INVALID_ARGUMENT", field)
    # Nothing was created.
    assert await client.counters(session_id) == (0, 0, 0, 0)
    listed = await client.call("list_session", pb.ListSessionRequest())
    assert [s.metadata.id for s in listed.sessions] == [session_id]


async def test_a_malformed_request_neither_stops_a_sqlite_cluster_nor_loses_work(
    tmp_path: Path,
) -> None:
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    config = tmp_path / "flame-conf.yaml"
    config.write_text(
        f"endpoint: {endpoint}\n"
        f"storage: sqlite://{tmp_path / 'flame.db'}\n"
        "applications: [{name: ping, shim: Log}]\n"
    )
    command = [*_flame_local(), "--config", str(config), "--slots", "1"]
    created: dict[str, bytes] = {}

    process = await anyio.open_process(command, stderr=subprocess.DEVNULL)
    try:
        await _first_line(process)
        async with await Channel.connect(endpoint) as channel:
            client = Client(channel)
            session_id = await client.session("ping")
            for n in range(20):
                created[await client.task(session_id, b"before %d" % n)] = b"before %d" % n
            await client.refused(
                "register_application",
                raw(pb.RegisterApplicationRequest, BAD_REGISTER),
                "INVALID_ARGUMENT",
                "application.command",
            )
            for n in range(20):
                created[await client.task(session_id, b"after %d" % n)] = b"after %d" % n
            # Past several commits: the cluster still serves, with every task.
            await anyio.sleep(0.3)
            assert process.returncode is None

            async def all_done() -> bool:
                return await client.counters(session_id) == (0, 0, 40, 0)

            await wait_until(all_done)
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()

    # Started again on the file: every task is there, the refused application is not.
    process = await anyio.open_process(command, stderr=subprocess.DEVNULL)
    try:
        await _first_line(process)
        async with await Channel.connect(endpoint) as channel:
            client = Client(channel)
            for task_id, data in created.items():
                task = await client.call(
                    "get_task", pb.GetTaskRequest(task_id=task_id, session_id=session_id)
                )
                assert (task.spec.input, task.status.state) == (data, pb.TaskState.Succeed)
            listed = await client.call("list_application", pb.ListApplicationRequest())
            assert [a.metadata.name for a in listed.applications] == ["ping"]
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()


# --------------------------------------------------------------------------
# A commit that fails


def _app(name: str, command: object) -> Application:
    return Application(name=name, shim=Shim.LOG, command=command)  # type: ignore[arg-type]


async def test_a_commit_that_fails_is_reported_retried_and_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from flame.local._sqlite import SqliteStorage

    from .test_storage import _reader

    path = tmp_path / "flame.db"
    store = SqliteStorage(path, window=0.001)
    done: list[str] = []

    async def wait_for_commit() -> None:
        await store.committed()
        done.append("committed")

    try:
        with caplog.at_level(logging.ERROR, "flame.local.storage"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.write_behind)
                store.save_application(_app("good", "x"))
                # A record that cannot be written: nothing of the group can be committed.
                broken = _app("broken", b"not text")
                store.save_application(broken)
                tg.start_soon(wait_for_commit)
                await wait_until(lambda: store.problem is not None, limit=10)
                assert "cannot commit to sqlite://" in store.problem
                assert any("cannot commit to sqlite://" in r.message for r in caplog.records)
                # Tried again, still failing: the writer is alive, the caller waits.
                await anyio.sleep(0.2)
                assert done == [] and store.unwritten
                assert dict(_reader(path))["applications"] == 0
                # Once it can be committed, it is, with everything of its group.
                object.__setattr__(broken, "command", "fixed")
                await wait_until(lambda: done == ["committed"], limit=10)
                assert store.problem is None and not store.unwritten
                assert dict(_reader(path))["applications"] == 2
                tg.cancel_scope.cancel()
    finally:
        store.close()


async def test_closing_with_a_failing_commit_tells_the_callers(tmp_path: Path) -> None:
    from flame._errors import FlameError, FlameErrorCode
    from flame.local._sqlite import SqliteStorage

    store = SqliteStorage(tmp_path / "flame.db")
    store.save_application(_app("broken", b"not text"))
    seen: list[FlameError] = []

    async def wait_for_commit() -> None:
        try:
            await store.committed()
        except FlameError as error:
            seen.append(error)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_for_commit)
        await anyio.sleep(0.05)
        store.close()
    (error,) = seen
    assert error.code is FlameErrorCode.UNAVAILABLE
    assert "stopped before it could keep this change" in error.message
