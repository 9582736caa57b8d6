"""Generated requests, malformed ones included, to every method of a running cluster.

Every call must either succeed or be refused with a precise status (never an
internal error), and afterwards the cluster must still run a normal session
end to end, with every counter right.

Among them, requests of every method with a field (at any depth) sent with a
wire type its type cannot have: each is refused with INVALID_ARGUMENT naming
that field, and changes nothing the cluster serves or (with sqlite storage)
keeps in its file.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire.faults import wrong_typed

from flame._errors import FlameError, FlameErrorCode
from flame._proto.v04 import flame as pb
from flame._transport import Channel
from flame.local import ApplicationConfig, ClusterConfig, LocalCluster

from .conftest import Client, raw, wait_until

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
IDS = st.one_of(
    st.sampled_from(["", "1", "2", "3", "-1", "0", "01", " 1", "1e3", "abc", "9" * 30]),
    st.integers(-3, 12).map(str),
    TEXT,
)
NAMES = st.one_of(st.sampled_from(["ping", "cat", "", "nope"]), TEXT)
BYTES = st.one_of(st.none(), st.binary(max_size=64))
APP_SPECS = st.one_of(
    st.none(),
    st.builds(
        pb.ApplicationSpec,
        shim=st.sampled_from([pb.Shim.Log, pb.Shim.Wasm]),
        url=st.one_of(st.none(), TEXT),
        command=st.one_of(st.none(), TEXT),
        arguments=st.lists(TEXT, max_size=3),
        environments=st.lists(TEXT, max_size=3),
        working_directory=st.one_of(st.none(), TEXT),
    ),
    # Stdio runs its command: only ever `cat`.
    st.builds(pb.ApplicationSpec, shim=st.just(pb.Shim.Stdio), command=st.just("cat")),
)
SESSION_SPECS = st.one_of(
    st.none(),
    st.builds(pb.SessionSpec, application=NAMES, slots=st.integers(-2, 4), common_data=BYTES),
)
TASK_SPECS = st.one_of(st.none(), st.builds(pb.TaskSpec, session_id=IDS, input=BYTES, output=BYTES))

#: A request of each method.
REQUESTS: dict[str, st.SearchStrategy[Any]] = {
    "register_application": st.builds(
        pb.RegisterApplicationRequest, name=NAMES, application=APP_SPECS
    ),
    "unregister_application": st.builds(pb.UnregisterApplicationRequest, name=NAMES),
    "update_application": st.builds(pb.UpdateApplicationRequest, name=NAMES, application=APP_SPECS),
    "get_application": st.builds(pb.GetApplicationRequest, name=NAMES),
    "list_application": st.just(pb.ListApplicationRequest()),
    "create_session": st.builds(pb.CreateSessionRequest, session=SESSION_SPECS),
    "delete_session": st.builds(pb.DeleteSessionRequest, session_id=IDS),
    "open_session": st.builds(pb.OpenSessionRequest, session_id=IDS),
    "close_session": st.builds(pb.CloseSessionRequest, session_id=IDS),
    "get_session": st.builds(pb.GetSessionRequest, session_id=IDS),
    "list_session": st.just(pb.ListSessionRequest()),
    "create_task": st.builds(pb.CreateTaskRequest, task=TASK_SPECS),
    "delete_task": st.builds(pb.DeleteTaskRequest, task_id=IDS, session_id=IDS),
    "get_task": st.builds(pb.GetTaskRequest, task_id=IDS, session_id=IDS),
    "watch_task": st.builds(pb.WatchTaskRequest, task_id=IDS, session_id=IDS),
}

CALLS = st.one_of([st.tuples(st.just(method), request) for method, request in REQUESTS.items()])


@st.composite
def _wrong_typed_call(draw: Any, method: str) -> tuple[str, Any, str]:
    """A valid request of ``method`` followed by one field of the wrong wire type."""
    valid = draw(REQUESTS[method])
    bad, path = draw(wrong_typed(type(valid)))
    return method, raw(type(valid), bytes(valid) + bad), path


#: A wrong-typed request of every method whose request has fields (the
#: others, ListApplication and ListSession, have nothing to send wrong).
WRONG_CALLS = st.one_of(
    [
        _wrong_typed_call(method)
        for method in REQUESTS
        if method not in ("list_application", "list_session")
    ]
)

#: What a refusal may be: the request was wrong, or the state forbade it.
REFUSALS = {FlameErrorCode.NOT_FOUND, FlameErrorCode.INVALID_ARGUMENT, FlameErrorCode.INVALID_STATE}


async def _call(client: Client, method: str, request: Any) -> None:
    try:
        if method == "watch_task":
            with anyio.fail_after(20):
                updates = await client.watch(request.session_id, request.task_id)
            assert updates[-1].status.state in (pb.TaskState.Succeed, pb.TaskState.Failed)
        else:
            await client.call(method, request)
    except FlameError as error:
        assert error.code in REFUSALS, error
        assert any(
            f": {status}: " in error.message
            for status in ("NOT_FOUND", "INVALID_ARGUMENT", "FAILED_PRECONDITION")
        ), error.message


async def _check_counters(client: Client) -> None:
    async def settled() -> bool:
        listed = await client.call("list_session", pb.ListSessionRequest())
        return all(s.status.pending == 0 and s.status.running == 0 for s in listed.sessions)

    # Every task of every generated session ends: none is left pending or running.
    await wait_until(settled)
    listed = await client.call("list_session", pb.ListSessionRequest())
    for session in listed.sessions:
        status = session.status
        assert min(status.pending, status.running, status.succeed, status.failed) >= 0
        total = status.succeed + status.failed
        found = 0
        for task_id in range(1, 200):
            try:
                task = await client.call(
                    "get_task",
                    pb.GetTaskRequest(task_id=str(task_id), session_id=session.metadata.id),
                )
            except FlameError:
                continue
            found += 1
            assert task.status.state in (pb.TaskState.Succeed, pb.TaskState.Failed)
        assert found == total, (session, found)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(calls=st.lists(CALLS, min_size=1, max_size=12))
async def test_generated_requests_leave_the_cluster_serving(
    client: Client, calls: list[tuple[str, Any]]
) -> None:
    for method, request in calls:
        await _call(client, method, request)
    await _check_counters(client)

    # A normal session still runs end to end.
    spec = pb.ApplicationSpec(shim=pb.Shim.Log)
    await client.call(
        "register_application", pb.RegisterApplicationRequest(name="steady", application=spec)
    )
    session_id = await client.session("steady")
    for _ in range(3):
        assert (await client.run(session_id, b"x")).status.state == pb.TaskState.Succeed
    assert await client.counters(session_id) == (0, 0, 3, 0)
    closed = await client.call("close_session", pb.CloseSessionRequest(session_id=session_id))
    assert closed.status.state == pb.SessionState.Closed
    await client.call("delete_session", pb.DeleteSessionRequest(session_id=session_id))


# --------------------------------------------------------------------------
# Wrong-typed requests store nothing


async def _settled(client: Client) -> bytes:
    """What the cluster serves, once no task is pending or running."""

    async def idle() -> bool:
        listed = await client.call("list_session", pb.ListSessionRequest())
        return all(s.status.pending == 0 and s.status.running == 0 for s in listed.sessions)

    await wait_until(idle)
    apps = await client.call("list_application", pb.ListApplicationRequest())
    sessions = await client.call("list_session", pb.ListSessionRequest())
    return bytes(apps) + bytes(sessions)


def _file_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {
            table: sorted(db.execute(f"SELECT * FROM {table}"))
            for table in ("applications", "sessions", "tasks")
        }


@pytest.fixture
async def sqlite_client(anyio_backend: str, tmp_path: Path) -> AsyncIterator[tuple[Client, Path]]:
    path = tmp_path / "flame.db"
    config = ClusterConfig(
        slots=2, storage=f"sqlite://{path}", applications=[ApplicationConfig("ping")]
    )
    async with LocalCluster(config) as cluster, await Channel.connect(cluster.endpoint) as channel:
        yield Client(channel), path


@pytest.mark.slow
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    calls=st.lists(
        st.one_of(CALLS.map(lambda call: (*call, None)), WRONG_CALLS), min_size=1, max_size=10
    )
)
async def test_wrong_typed_requests_are_refused_and_store_nothing(
    sqlite_client: tuple[Client, Path], calls: list[tuple[str, Any, str | None]]
) -> None:
    client, path = sqlite_client
    for method, request, wrong_field in calls:
        if wrong_field is None:
            await _call(client, method, request)
            continue
        served = await _settled(client)
        stored = _file_rows(path)
        error = await client.refused(method, request, "INVALID_ARGUMENT")
        # Named by the checker (Request.path) or by the hand-written codec (Message.field).
        assert f".{wrong_field.rsplit('.', 1)[-1]} " in error.message, (wrong_field, error)
        # Nothing changed, in what the cluster serves or in its file.
        assert await _settled(client) == served
        assert _file_rows(path) == stored
    await _check_counters(client)
    session_id = await client.session("ping")
    assert (await client.run(session_id, b"x")).status.state == pb.TaskState.Succeed
