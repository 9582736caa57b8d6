"""One client, every wire: the probe, the calls v0.6 added, and what each wire refuses.

Each test runs against servers that answer as Flame v0.4, v0.5 and v0.6 do
(``v04_server``, ``v06_server``), under asyncio and trio.
"""

from __future__ import annotations

import re
import ssl
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anyio
import anyio.abc
import pytest
import trustme
from v04_server import V04Server
from v06_server import NODE, WireServer, serve_v06

import flame
from flame import FlameError, FlameErrorCode, Shim, TaskState

HOST_APP = {"shim": Shim.HOST, "command": "/bin/service"}


async def _session(conn: flame.Connection, **attrs: object) -> flame.Session:
    if conn.wire == "v0.4":
        await conn.register_application("app", {"shim": Shim.SHELL, "command": "sh"})
    else:
        await conn.register_application("app", HOST_APP)
    return await conn.create_session(flame.SessionAttributes(application="app", **attrs))  # type: ignore[arg-type]


def _recent(moment: datetime) -> bool:
    """A UTC time within a day of now: a time read in the wrong unit is years off."""
    now = datetime.now(timezone.utc)
    return moment.tzinfo is timezone.utc and abs(now - moment) < timedelta(days=1)


def _refused(caught: pytest.ExceptionInfo[FlameError], code: FlameErrorCode, *words: str) -> None:
    assert caught.value.code == code, caught.value
    for word in words:
        assert word in caught.value.message, caught.value


# --------------------------------------------------------------------------
# Finding out the wire


async def test_the_probe_finds_each_wire_and_the_seed_calls_run(
    wire_conn: flame.Connection,
) -> None:
    session = await _session(wire_conn)
    task = await session.run_task(b"hello")
    assert (task.state, task.output) == (TaskState.SUCCEED, b"hello")
    assert _recent(task.creation_time) and task.completion_time is not None
    assert _recent(task.completion_time) and _recent(session.creation_time)
    assert (await wire_conn.get_session(session.id)).succeed == 1
    assert session.id in [s.id for s in await wire_conn.list_sessions()]
    assert "app" in [a.name for a in await wire_conn.list_applications()]
    closed = await wire_conn.close_session(session.id)
    assert closed.state is flame.SessionState.CLOSED and closed.completion_time is not None
    assert wire_conn.wire in repr(wire_conn)


async def test_a_named_wire_is_not_probed(v06: WireServer, v05: WireServer) -> None:
    async with await flame.connect(v06.endpoint, wire="0.6") as conn:
        assert conn.wire == "v0.6"
        await conn.list_sessions()
    assert await v06.calls() == ["ListSession"]
    # Told the wrong wire, every call says which wire the client spoke.
    async with await flame.connect(v05.endpoint, wire="v0.6") as conn:
        with pytest.raises(FlameError) as caught:
            await conn.list_sessions()
    _refused(caught, FlameErrorCode.UNIMPLEMENTED, "ListSession", "v0.6")


async def test_a_wire_not_spoken_is_a_config_error(v06: WireServer) -> None:
    with pytest.raises(FlameError) as caught:
        await flame.connect(v06.endpoint, wire="v0.7")
    _refused(caught, FlameErrorCode.INVALID_CONFIG, "'v0.4'", "'v0.6'", "v0.7")


async def test_the_probe_of_a_tls_server_over_plaintext_says_to_use_https(
    tmp_path: Path, anyio_backend: str
) -> None:
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    async with serve_v06(ssl=context) as server:
        plaintext = server.endpoint.replace("https://", "http://")
        with pytest.raises(FlameError) as caught:
            await flame.connect(plaintext, connect_timeout=5, request_timeout=5)
        async with await flame.connect(server.endpoint, ca_file=str(ca_file)) as conn:
            assert conn.wire == "v0.6"
    _refused(caught, FlameErrorCode.INVALID_CONFIG, "https://", plaintext.split("//")[1])


async def test_a_server_that_drops_the_probe_without_tls_is_not_called_tls(
    anyio_backend: str,
) -> None:
    async def drop(stream: anyio.abc.SocketStream) -> None:
        await stream.aclose()

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as group:
            group.start_soon(listener.serve, drop)
            with pytest.raises(FlameError) as caught:
                await flame.connect(f"http://127.0.0.1:{port}", connect_timeout=5)
            group.cancel_scope.cancel()
    assert caught.value.code in (FlameErrorCode.UNAVAILABLE, FlameErrorCode.INTERNAL)
    assert "https" not in caught.value.message


# --------------------------------------------------------------------------
# Applications


async def test_v06_applications_carry_every_field(v06_conn: flame.Connection) -> None:
    attributes = flame.ApplicationAttributes(
        shim=Shim.GRPC,
        url="https://example.com/app.tar.gz",
        command="/bin/service",
        arguments=["--fast"],
        environments={"A": "1", "B": "x=y"},
        working_directory="/tmp",
        description="an app",
        labels=["team-a"],
        image="registry/app:1",
        max_instances=8,
        delay_release=5,
        schema={"input": '{"type": "string"}'},
        installer="python",
    )
    await v06_conn.register_application("full", attributes)
    app = await v06_conn.get_application("full")
    assert app.shim is Shim.HOST is Shim.GRPC
    assert app.environments == ["A=1", "B=x=y"]
    assert (app.url, app.installer, app.image) == (attributes.url, "python", "registry/app:1")
    assert (app.description, app.labels, app.max_instances, app.delay_release) == (
        "an app",
        ["team-a"],
        8,
        5,
    )
    assert app.schema == flame.ApplicationSchema(input='{"type": "string"}')
    assert _recent(app.creation_time)
    # The server's defaults come back as set.
    await v06_conn.register_application("plain", {"shim": Shim.HOST, "command": "/bin/service"})
    plain = await v06_conn.get_application("plain")
    assert (plain.shim, plain.max_instances, plain.delay_release) == (Shim.HOST, 1_000_000, 60)
    listed = {a.name for a in await v06_conn.list_applications()}
    assert {"full", "plain", "flmexec", "flmping", "flmrun"} <= listed


async def test_v05_applications(v05_conn: flame.Connection) -> None:
    await v05_conn.register_application(
        "svc", {"shim": "host", "command": "/bin/service", "environments": ["A=1"], "labels": ["x"]}
    )
    app = await v05_conn.get_application("svc")
    assert (app.shim, app.environments, app.labels) == (Shim.GRPC, ["A=1"], ["x"])
    assert app.url is None and app.installer is None
    with pytest.raises(FlameError) as caught:
        await v05_conn.get_application("nope")
    _refused(caught, FlameErrorCode.NOT_FOUND, "nope")


@pytest.mark.parametrize("shim", [Shim.LOG, Shim.STDIO, Shim.SHELL])
async def test_v04_shims_have_no_meaning_on_v05_and_v06(
    v05_conn: flame.Connection, v06_conn: flame.Connection, shim: Shim
) -> None:
    for conn in (v05_conn, v06_conn):
        with pytest.raises(FlameError) as caught:
            await conn.register_application("x", {"shim": shim})
        _refused(caught, FlameErrorCode.INVALID_ARGUMENT, f"Shim.{shim.name}", conn.wire)
        assert "x" not in [a.name for a in await conn.list_applications()]


async def test_fields_a_wire_lacks_are_refused_naming_it(
    v04_conn: flame.Connection, v05_conn: flame.Connection
) -> None:
    cases = [
        (v04_conn, {"description": "d"}, FlameErrorCode.UNIMPLEMENTED, "description"),
        (v04_conn, {"schema": {"input": "{}"}}, FlameErrorCode.UNIMPLEMENTED, "schema"),
        (v04_conn, {"installer": "python"}, FlameErrorCode.UNIMPLEMENTED, "installer"),
        (v05_conn, {"installer": "python"}, FlameErrorCode.UNIMPLEMENTED, "installer"),
        (v05_conn, {"url": "http://x"}, FlameErrorCode.INVALID_ARGUMENT, "url"),
    ]
    for conn, attrs, code, word in cases:
        with pytest.raises(FlameError) as caught:
            await conn.register_application("x", {"shim": Shim.WASM, **attrs})
        _refused(caught, code, word, conn.wire)


async def test_get_application_on_a_v04_session_manager_is_unimplemented(
    v04_conn: flame.Connection,
) -> None:
    await v04_conn.register_application("app", {"shim": Shim.LOG})
    with pytest.raises(FlameError) as caught:
        await v04_conn.get_application("app")
    _refused(caught, FlameErrorCode.UNIMPLEMENTED, "GetApplication", "v0.4")


async def test_get_application_on_the_embedded_cluster(conn: flame.Connection) -> None:
    await conn.register_application("app", {"shim": Shim.STDIO, "command": "cat"})
    app = await conn.get_application("app")
    assert (app.name, app.shim, app.command) == ("app", Shim.STDIO, "cat")


# --------------------------------------------------------------------------
# Sessions: ids, fields, open_session


async def test_v06_session_ids_are_made_in_the_official_shape_or_chosen(
    v06_conn: flame.Connection,
) -> None:
    made = await _session(v06_conn)
    assert re.fullmatch(r"app-[A-Za-z0-9]{6}", made.id)
    other = await v06_conn.create_session({"application": "app"})
    assert other.id != made.id
    chosen = await v06_conn.create_session({"application": "app", "id": "mine"})
    assert chosen.id == "mine" and (await v06_conn.get_session("mine")).id == "mine"
    by_argument = await v06_conn.create_session({"application": "app"}, session_id="theirs")
    assert by_argument.id == "theirs"
    await by_argument.run_task(b"works")
    with pytest.raises(FlameError) as caught:
        await v06_conn.create_session({"application": "app"}, session_id="mine")
    _refused(caught, FlameErrorCode.ALREADY_EXISTS, "CreateSession", "a session with this id")
    with pytest.raises(FlameError) as caught:
        await v06_conn.create_session({"application": "app", "id": "a"}, session_id="b")
    _refused(caught, FlameErrorCode.INVALID_ARGUMENT, "'a'", "'b'")
    with pytest.raises(FlameError) as caught:
        await v06_conn.create_session({"application": "unknown"})
    _refused(caught, FlameErrorCode.INVALID_STATE, "application is unknown")


async def test_v06_session_fields_round_trip(v06_conn: flame.Connection) -> None:
    session = await _session(
        v06_conn, min_instances=2, max_instances=4, priority=3, resreq="cpu=2,mem=512m,gpu=1"
    )
    fetched = await v06_conn.get_session(session.id)
    for value in (session, fetched):
        assert (value.min_instances, value.max_instances, value.priority) == (2, 4, 3)
        assert value.resreq == flame.ResourceRequirement(cpu=2, memory=512 << 20, gpu=1)
        assert value.slots == 1
    # Without resreq, the cluster's default is resolved and reported.
    plain = await v06_conn.create_session({"application": "app"})
    assert plain.resreq == flame.ResourceRequirement(cpu=1, memory=1 << 30, gpu=0)
    assert (plain.min_instances, plain.max_instances, plain.priority) == (0, None, 0)


async def test_slots_other_than_1_have_no_meaning_on_v06(v06_conn: flame.Connection) -> None:
    await v06_conn.register_application("app", HOST_APP)
    with pytest.raises(FlameError) as caught:
        await v06_conn.create_session({"application": "app", "slots": 2})
    _refused(caught, FlameErrorCode.INVALID_ARGUMENT, "slots=2", "v0.6", "resreq")
    assert await v06_conn.list_sessions() == []


async def test_v05_keeps_slots_and_server_made_ids(v05_conn: flame.Connection) -> None:
    session = await _session(v05_conn, slots=2)
    assert (session.id, session.slots) == ("1", 2)
    assert (await v05_conn.get_session("1")).slots == 2


@pytest.mark.parametrize(
    ("attrs", "code", "word"),
    [
        ({"id": "mine"}, FlameErrorCode.INVALID_ARGUMENT, "session id"),
        ({"min_instances": 1}, FlameErrorCode.UNIMPLEMENTED, "min_instances"),
        ({"max_instances": 1}, FlameErrorCode.UNIMPLEMENTED, "max_instances"),
        ({"priority": 1}, FlameErrorCode.UNIMPLEMENTED, "priority"),
        ({"resreq": "cpu=1"}, FlameErrorCode.UNIMPLEMENTED, "resreq"),
    ],
)
async def test_v06_session_fields_on_older_wires_are_refused_naming_the_wire(
    v04_conn: flame.Connection,
    v05_conn: flame.Connection,
    attrs: dict[str, object],
    code: FlameErrorCode,
    word: str,
) -> None:
    for conn in (v04_conn, v05_conn):
        await conn.register_application("app", {"shim": Shim.HOST})
        with pytest.raises(FlameError) as caught:
            await conn.create_session({"application": "app", **attrs})
        _refused(caught, code, word, conn.wire)
        assert await conn.list_sessions() == []


async def test_open_session_on_v06_gets_or_creates(v06_conn: flame.Connection) -> None:
    await v06_conn.register_application("app", HOST_APP)
    attrs = flame.SessionAttributes(application="app", priority=1)
    created = await v06_conn.open_session("box", attrs)
    assert (created.id, created.state, created.priority) == ("box", flame.SessionState.OPEN, 1)
    await created.run_task(b"one")
    again = await v06_conn.open_session("box", attrs)
    assert (again.id, again.succeed) == ("box", 1)
    assert (await v06_conn.open_session("box")).id == "box"  # no spec: must exist
    with pytest.raises(FlameError) as caught:
        await v06_conn.open_session("box", {"application": "app", "priority": 2})
    _refused(caught, FlameErrorCode.INVALID_ARGUMENT, "spec mismatch", "priority")
    with pytest.raises(FlameError) as caught:
        await v06_conn.open_session("missing")
    _refused(caught, FlameErrorCode.NOT_FOUND, "missing")
    await created.close()
    with pytest.raises(FlameError) as caught:
        await v06_conn.open_session("box", attrs)
    _refused(caught, FlameErrorCode.INVALID_ARGUMENT, "not open")
    with pytest.raises(FlameError) as caught:
        await v06_conn.open_session("a", {"application": "app", "id": "b"})
    _refused(caught, FlameErrorCode.INVALID_ARGUMENT, "'b'")


async def test_open_session_on_v05_is_unimplemented_and_attrs_have_no_meaning(
    v05: WireServer, v05_conn: flame.Connection
) -> None:
    session = await _session(v05_conn)
    with pytest.raises(FlameError) as caught:
        await v05_conn.open_session(session.id)
    _refused(caught, FlameErrorCode.UNIMPLEMENTED, "OpenSession", "v0.5")
    assert "panic" in await v05.calls()  # the call was made, and the server reset it
    with pytest.raises(FlameError) as caught:
        await v05_conn.open_session(session.id, {"application": "app"})
    _refused(caught, FlameErrorCode.INVALID_ARGUMENT, "open_session", "v0.5")
    # The connection is fine afterwards.
    assert (await session.run_task(b"still")).output == b"still"


async def test_open_session_on_v04(v04_conn: flame.Connection, conn: flame.Connection) -> None:
    session = await _session(v04_conn)
    with pytest.raises(FlameError) as caught:
        await v04_conn.open_session(session.id)
    _refused(caught, FlameErrorCode.UNIMPLEMENTED, "OpenSession", "v0.4")
    with pytest.raises(FlameError) as caught:
        await v04_conn.open_session(session.id, {"application": "app"})
    _refused(caught, FlameErrorCode.INVALID_ARGUMENT, "open_session", "v0.4")
    # The embedded cluster implements OpenSession of an existing session.
    await conn.register_application("log", {"shim": Shim.LOG})
    local = await conn.create_session({"application": "log"})
    opened = await conn.open_session(local.id)
    assert (opened.id, opened.application) == (local.id, "log")


# --------------------------------------------------------------------------
# Tasks: ListTask, CANCELLED, events, refusals


async def test_list_tasks_streams_every_task_of_a_v06_session(
    v06_conn: flame.Connection,
) -> None:
    session = await _session(v06_conn)
    inputs = [str(n).encode() for n in range(12)]
    await session.run_tasks(inputs)
    listed = [task async for task in v06_conn.list_tasks(session.id)]
    assert sorted(t.input or b"" for t in listed) == sorted(inputs)
    assert all(t.state is TaskState.SUCCEED and t.output == t.input for t in listed)
    # Left early, the stream is closed; the connection carries on.
    async with v06_conn.list_tasks(session.id) as tasks:
        async for _ in tasks:
            break
    assert len([t async for t in v06_conn.list_tasks(session.id)]) == 12
    with pytest.raises(FlameError) as caught:
        async for _ in v06_conn.list_tasks("nope"):
            pass
    _refused(caught, FlameErrorCode.NOT_FOUND, "ListTask", "nope")


async def test_list_tasks_executors_and_nodes_where_the_wire_lacks_them(
    wire_conn: flame.Connection,
) -> None:
    lacking = {
        "v0.4": {"list_tasks", "list_executors", "list_nodes"},
        "v0.5": {"list_tasks", "list_nodes"},
        "v0.6": set(),
    }[wire_conn.wire]
    if "list_tasks" in lacking:
        with pytest.raises(FlameError) as caught:
            wire_conn.list_tasks("1")  # at once, before any iteration
        _refused(caught, FlameErrorCode.UNIMPLEMENTED, "ListTask", wire_conn.wire)
    for name in ("list_executors", "list_nodes"):
        if name in lacking:
            with pytest.raises(FlameError) as caught:
                await getattr(wire_conn, name)()
            _refused(caught, FlameErrorCode.UNIMPLEMENTED, wire_conn.wire)
        else:
            assert await getattr(wire_conn, name)()


async def test_executors_and_nodes(v05_conn: flame.Connection, v06_conn: flame.Connection) -> None:
    session = await _session(v06_conn)
    task = await session.create_task(b"hold")
    with anyio.fail_after(20):
        while (await session.get_task(task.id)).state is not TaskState.RUNNING:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    executors = await v06_conn.list_executors()
    assert [e.state for e in executors] == [flame.ExecutorState.BOUND, flame.ExecutorState.IDLE]
    assert executors[0].session_id == session.id and executors[1].session_id is None
    assert executors[0].shim is Shim.HOST and executors[0].slots is None
    assert executors[0].node == NODE
    assert executors[0].resreq == flame.ResourceRequirement(cpu=1, memory=2 << 30)
    (node,) = await v06_conn.list_nodes()
    assert (node.name, node.hostname, node.state, node.arch) == (
        NODE,
        NODE,
        flame.NodeState.READY,
        "x86_64",
    )
    assert node.capacity == flame.ResourceRequirement(cpu=2, memory=4 << 30)
    assert node.last_heartbeat_time is None  # the server sends 0
    old = await v05_conn.list_executors()
    assert [(e.slots, e.shim) for e in old] == [(1, None), (1, None)]


async def test_closing_a_v06_session_cancels_its_pending_tasks(
    v06: WireServer, v06_conn: flame.Connection
) -> None:
    session = await _session(v06_conn)
    pending = await session.create_task(b"steps")  # pending until the first release

    seen: list[TaskState] = []

    async def watch() -> None:
        async for update in session.watch_task(pending.id):
            seen.append(update.state)

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        await v06.wait_for_watches(1)
        closed = await v06_conn.close_session(session.id)
    assert seen == [TaskState.CANCELLED]
    assert (closed.cancelled, closed.pending) == (1, 0)
    task = await session.get_task(pending.id)
    assert task.state is TaskState.CANCELLED and task.is_completed()
    assert task.completion_time is not None and _recent(task.completion_time)
    # Closing again succeeds again, on v0.6.
    assert (await v06_conn.close_session(session.id)).state is flame.SessionState.CLOSED


class _Informer(flame.TaskInformer):
    def __init__(self) -> None:
        self.states: list[TaskState] = []
        self.errors: list[FlameError] = []

    def on_update(self, task: flame.Task) -> None:
        self.states.append(task.state)

    def on_error(self, error: FlameError) -> None:
        self.errors.append(error)


async def test_a_cancelled_task_is_not_a_success_for_run_task_and_run_tasks(
    v06: WireServer, v06_conn: flame.Connection
) -> None:
    session = await _session(v06_conn)
    informer = _Informer()
    outcomes: list[BaseException] = []

    async def run(call: object) -> None:
        try:
            await call  # type: ignore[misc]
        except FlameError as error:
            outcomes.append(error)

    returned: list[flame.Task] = []

    async def run_returning() -> None:
        returned.append(await session.run_task(b"steps"))

    async with anyio.create_task_group() as group:
        group.start_soon(run, session.run_task(b"steps", informer, check=True))
        group.start_soon(run_returning)
        group.start_soon(run, session.run_tasks([b"steps", b"steps"], fail_fast=False))
        await v06.wait_for_watches(4)
        await v06_conn.close_session(session.id)
    # Returned as it is without check=True; raised with it, like a failure.
    assert [task.state for task in returned] == [TaskState.CANCELLED]
    single = next(e for e in outcomes if not isinstance(e, flame.TaskFailures))
    assert single.code == FlameErrorCode.INTERNAL and "cancelled" in single.message
    assert single.task is not None and single.task.state is TaskState.CANCELLED
    assert informer.states == [TaskState.PENDING, TaskState.CANCELLED]
    assert informer.errors == [single]
    failures = next(e for e in outcomes if isinstance(e, flame.TaskFailures))
    assert failures.tasks is not None
    assert [t.state for t in failures.tasks if t is not None] == [TaskState.CANCELLED] * 2
    assert all("cancelled" in f.error.message for f in failures.failures)


async def test_v06_task_events_and_times_in_milliseconds(v06_conn: flame.Connection) -> None:
    session = await _session(v06_conn)
    task = await session.run_task(b"ok")
    assert task.events == ()  # a watch's messages carry none before a GetTask
    fetched = await session.get_task(task.id)
    assert [e.code for e in fetched.events] == [0, 1, 2]
    assert fetched.events[0] == flame.Event(
        0, "Task was created with state <Pending>", fetched.events[0].creation_time
    )
    assert all(_recent(e.creation_time) for e in fetched.events)
    assert fetched.creation_time <= fetched.events[-1].creation_time
    failed = await session.run_task(b"fail:the service said no")
    # The reason is the failure event's message: the client fetched the task for it.
    assert (failed.state, failed.output, failed.events[-1].code) == (TaskState.FAILED, None, 3)
    assert failed.events[-1].message == "the service said no"
    with pytest.raises(FlameError) as caught:
        await session.run_task(b"fail:the service said no", check=True)
    _refused(caught, FlameErrorCode.INTERNAL, "the service said no")


async def test_v05_events_and_times_in_seconds(v05_conn: flame.Connection) -> None:
    session = await _session(v05_conn)
    await session.run_task(b"ok")
    fetched = await session.get_task("1")
    assert [e.code for e in fetched.events] == [1, 2]  # no creation event on v0.5
    assert fetched.events[1].message == "Task completed successfully on host host-1."
    assert _recent(fetched.creation_time) and _recent(fetched.events[0].creation_time)
    with pytest.raises(FlameError) as caught:
        await session.run_task(b"fail:v05 says no", check=True)
    _refused(caught, FlameErrorCode.INTERNAL, "v05 says no")


async def test_v06_session_events(v06_conn: flame.Connection) -> None:
    await v06_conn.register_application("broken", {"shim": "host", "command": "fail-bind"})
    session = await v06_conn.create_session({"application": "broken"})
    assert session.events == ()
    await session.create_task(b"never runs")
    fetched = await v06_conn.get_session(session.id)
    (event,) = fetched.events
    assert event.code == 1001 and "failed to bind" in (event.message or "")
    assert _recent(event.creation_time)
    assert [s.events for s in await v06_conn.list_sessions()] == [fetched.events]


async def test_refusals_of_v06_are_state_errors(
    v06: WireServer, v06_conn: flame.Connection
) -> None:
    session = await _session(v06_conn)
    held = await session.create_task(b"hold")
    with anyio.fail_after(20):
        while (await session.get_task(held.id)).state is not TaskState.RUNNING:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    with pytest.raises(FlameError) as caught:
        await session.close()
    _refused(caught, FlameErrorCode.INVALID_STATE, "running tasks", "CloseSession")
    await v06.release()
    await session.close()
    with pytest.raises(FlameError) as caught:
        await session.create_task(b"late")
    _refused(caught, FlameErrorCode.INVALID_STATE, "CreateTask", "closed")
    # An unknown task: v0.6 ends the watch with no message; the client asks.
    other = await _session_of(v06_conn)
    with pytest.raises(FlameError) as caught:
        async for _ in other.watch_task("99"):
            pass
    _refused(caught, FlameErrorCode.NOT_FOUND, "99")
    with pytest.raises(FlameError) as caught:
        await other.get_task("not-a-number")
    _refused(caught, FlameErrorCode.INVALID_ARGUMENT, "invalid task id")


async def _session_of(conn: flame.Connection) -> flame.Session:
    return await conn.create_session({"application": "app"})


async def test_refusals_of_v05_are_state_errors(v05_conn: flame.Connection) -> None:
    session = await _session(v05_conn)
    await session.close()
    with pytest.raises(FlameError) as caught:
        await session.create_task(b"late")
    _refused(caught, FlameErrorCode.INVALID_STATE, "CreateTask", "UNKNOWN", "v0.5")
    with pytest.raises(FlameError) as caught:
        await v05_conn.create_session({"application": "unknown"})
    _refused(caught, FlameErrorCode.INVALID_STATE, "CreateSession")
    with pytest.raises(FlameError) as caught:
        await v05_conn.get_session("app-abc")
    _refused(caught, FlameErrorCode.INVALID_ARGUMENT, "invalid session id")


async def test_v04_server_refusals_still_read_as_before(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    assert v04_conn.wire == "v0.4"
    session = await _session(v04_conn)
    await session.close()
    with pytest.raises(FlameError) as caught:
        await session.create_task(b"late")
    _refused(caught, FlameErrorCode.INVALID_STATE, "CreateTask", "closed")
