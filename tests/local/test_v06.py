"""The embedded cluster on v0.6: the flame.v1.Frontend's rules, and Host applications.

The client here is the generated v0.6 stubs over the SDK's transport; the
services are real processes of the v0.6 contract (``_instance_service.py``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from flame._errors import FlameError, FlameErrorCode
from flame._proto.v06.flame import v1 as pb
from flame._transport import Channel
from flame.local import ApplicationConfig, ClusterConfig, LocalCluster

from .conftest import wait_until

SERVICE = str(Path(__file__).with_name("_instance_service.py"))
#: The services import flame: they run with this interpreter, from the tests' folder.
PYTHONPATH = os.pathsep.join(p for p in sys.path if p)


def service(name: str, mode: str = "echo", **extra: Any) -> ApplicationConfig:
    """A Host application running ``_instance_service.py MODE``."""
    environments = {"PYTHONPATH": PYTHONPATH, **extra.pop("environments", {})}
    return ApplicationConfig(
        name,
        shim="Host",
        command=sys.executable,
        arguments=(SERVICE, mode),
        environments=environments,
        **extra,
    )


class Client:
    """The generated v0.6 stubs over our transport, with shortcuts for tests."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.stub = pb.FrontendStub(channel)

    async def call(self, method: str, request: Any) -> Any:
        return await self.channel.unary(getattr(self.stub, method), request)

    async def refused(self, method: str, request: Any, status: str, *words: str) -> FlameError:
        with pytest.raises(FlameError) as info:
            if method in ("watch_task", "list_task"):
                await self.stream(method, request)
            else:
                await self.call(method, request)
        error = info.value
        assert f": {status}: " in error.message, error.message
        for word in words:
            assert word in error.message, (word, error.message)
        return error

    async def stream(self, method: str, request: Any) -> list[pb.Task]:
        async with self.channel.stream(getattr(self.stub, method), request) as updates:
            return [update async for update in updates]

    async def watch(self, session_id: str, task_id: str) -> list[pb.Task]:
        request = pb.WatchTaskRequest(task_id=task_id, session_id=session_id)
        return await self.stream("watch_task", request)

    async def register(self, name: str, spec: pb.ApplicationSpec | None) -> pb.Result:
        request = pb.RegisterApplicationRequest(name=name, application=spec)
        return await self.call("register_application", request)

    async def session(self, session_id: str, application: str = "svc", **spec: Any) -> pb.Session:
        request = pb.CreateSessionRequest(
            session_id=session_id, session=pb.SessionSpec(application=application, **spec)
        )
        return await self.call("create_session", request)

    async def task(self, session_id: str, data: bytes | None = b"") -> pb.Task:
        request = pb.CreateTaskRequest(task=pb.TaskSpec(session_id=session_id, input=data))
        return await self.call("create_task", request)

    async def run(self, session_id: str, data: bytes | None = b"") -> pb.Task:
        """Create a task and watch it to its end; the last message."""
        task = await self.task(session_id, data)
        return (await self.watch(session_id, task.metadata.id))[-1]

    async def get_session(self, session_id: str) -> pb.Session:
        return await self.call("get_session", pb.GetSessionRequest(session_id=session_id))

    async def get_task(self, session_id: str, task_id: str) -> pb.Task:
        return await self.call(
            "get_task", pb.GetTaskRequest(task_id=task_id, session_id=session_id)
        )


def _cluster(*applications: ApplicationConfig, **options: Any) -> LocalCluster:
    options.setdefault("slots", 2)
    return LocalCluster(ClusterConfig(wire="v0.6", applications=applications, **options))


@pytest.fixture
async def client(anyio_backend: str) -> AsyncIterator[Client]:
    async with (
        _cluster(service("svc"), service("shy", "refuse")) as cluster,
        await Channel.connect(cluster.endpoint) as channel,
    ):
        yield Client(channel)


def _exists(path: str) -> bool:
    return Path(path).exists()


def _ms(value: int) -> None:
    """``value`` is now, in Unix milliseconds."""
    assert abs(value - time.time() * 1000) < 600_000, value


# --------------------------------------------------------------------------
# Applications


async def test_applications_register_read_update_and_go(client: Client) -> None:
    spec = pb.ApplicationSpec(
        shim=pb.Shim.Host,
        command="/bin/true",
        description="d",
        labels=["x", "y"],
        image="img:1",
        environments=[pb.Environment(name="A", value="1"), pb.Environment(name="A", value="2")],
        schema=pb.ApplicationSchema(input='{"type": "string"}'),
    )
    result = await client.register("other", spec)
    assert (result.return_code, result.message) == (0, None)
    app = await client.call("get_application", pb.GetApplicationRequest(name="other"))
    assert (app.metadata.id, app.metadata.name) == ("other", "other")
    assert (app.spec.shim, app.spec.command, app.spec.image) == (pb.Shim.Host, "/bin/true", "img:1")
    assert [(e.name, e.value) for e in app.spec.environments] == [("A", "1"), ("A", "2")]
    assert (app.spec.labels, app.spec.description) == (["x", "y"], "d")
    assert app.spec.schema.input == '{"type": "string"}'
    # What the spec left out is given as a v0.6 cluster gives it.
    assert (app.spec.max_instances, app.spec.delay_release) == (1_000_000, 60)
    _ms(app.status.creation_time)
    listed = await client.call("list_application", pb.ListApplicationRequest())
    assert [a.metadata.name for a in listed.applications] == ["svc", "shy", "other"]

    taken = await client.register("other", spec)
    assert taken.return_code == -1 and "already registered" in taken.message
    update = pb.UpdateApplicationRequest(
        name="other", application=pb.ApplicationSpec(command="/bin/false", delay_release=5)
    )
    assert (await client.call("update_application", update)).return_code == 0
    app = await client.call("get_application", pb.GetApplicationRequest(name="other"))
    assert (app.spec.command, app.spec.delay_release) == ("/bin/false", 5)
    unknown = pb.UpdateApplicationRequest(name="nope", application=spec)
    assert (await client.call("update_application", unknown)).return_code == -1

    gone = pb.UnregisterApplicationRequest(name="other")
    assert (await client.call("unregister_application", gone)).return_code == 0
    await client.refused(
        "get_application",
        pb.GetApplicationRequest(name="other"),
        "NOT_FOUND",
        "application other not found",
    )
    # Unregistering what is not there succeeds, as on v0.6.
    assert (await client.call("unregister_application", gone)).return_code == 0


@pytest.mark.parametrize(
    ("name", "spec", "words"),
    [
        ("", pb.ApplicationSpec(command="x"), ["name is empty"]),
        (".hidden", pb.ApplicationSpec(command="x"), ["not valid"]),
        ("a/b", pb.ApplicationSpec(command="x"), ["not valid"]),
        ("a..b", pb.ApplicationSpec(command="x"), ["not valid"]),
        ("x" * 254, pb.ApplicationSpec(command="x"), ["not valid"]),
        ("wasm", pb.ApplicationSpec(shim=pb.Shim.Wasm, command="x"), ["Wasm", "cannot run"]),
        ("nocmd", pb.ApplicationSpec(), ["no command"]),
        ("inst", pb.ApplicationSpec(command="x", installer="python"), ["installer"]),
    ],
)
async def test_refused_applications_are_results(
    client: Client, name: str, spec: pb.ApplicationSpec, words: list[str]
) -> None:
    result = await client.register(name, spec)
    assert result.return_code == -1
    for word in words:
        assert word in result.message, result.message
    listed = await client.call("list_application", pb.ListApplicationRequest())
    assert len(listed.applications) == 2


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (None, ["application spec is missing"]),
        (pb.ApplicationSpec(command="x", working_directory="rel"), ["absolute path, got: rel"]),
        (
            pb.ApplicationSpec(command="x", schema=pb.ApplicationSchema(output="{nope")),
            ["invalid output schema"],
        ),
        (
            pb.ApplicationSpec(command="x", schema=pb.ApplicationSchema(common_data="3")),
            ["invalid common data schema", "object or a boolean"],
        ),
    ],
)
async def test_malformed_specs_are_invalid_arguments(
    client: Client, spec: pb.ApplicationSpec | None, words: list[str]
) -> None:
    request = pb.RegisterApplicationRequest(name="bad", application=spec)
    await client.refused("register_application", request, "INVALID_ARGUMENT", *words)


async def test_an_application_in_use_stays_and_takes_its_closed_sessions_when_it_goes(
    client: Client,
) -> None:
    await client.session("s1")
    await client.session("s2")
    gone = pb.UnregisterApplicationRequest(name="svc")
    refused = await client.call("unregister_application", gone)
    assert (refused.return_code, refused.message) == (-1, "2 open sessions in the application")
    update = pb.UpdateApplicationRequest(name="svc", application=pb.ApplicationSpec(command="x"))
    assert (await client.call("update_application", update)).return_code == -1
    for session_id in ("s1", "s2"):
        await client.call("close_session", pb.CloseSessionRequest(session_id=session_id))
    assert (await client.call("unregister_application", gone)).return_code == 0
    listed = await client.call("list_session", pb.ListSessionRequest())
    assert listed.sessions == []


# --------------------------------------------------------------------------
# Sessions


async def test_sessions_are_named_by_the_client(client: Client) -> None:
    created = await client.session("my-session", common_data=b"cd", min_instances=0)
    assert (created.metadata.id, created.metadata.name) == ("my-session", "my-session")
    status = created.status
    assert (status.state, status.pending, status.cancelled, status.events) == (
        pb.SessionState.Open,
        0,
        0,
        [],
    )
    _ms(status.creation_time)
    assert status.completion_time is None
    # No resreq given: the default, resolved.
    assert created.spec.resreq == pb.ResourceRequirement(cpu=1, memory=1 << 30, gpu=0)
    assert (created.spec.batch_size, created.spec.common_data) == (1, b"cd")
    await client.refused(
        "create_session",
        pb.CreateSessionRequest(session_id="my-session", session=pb.SessionSpec(application="svc")),
        "INTERNAL",
        "already exists",
    )
    await client.refused(
        "create_session",
        pb.CreateSessionRequest(session_id="x", session=pb.SessionSpec(application="nope")),
        "INTERNAL",
        "'nope' is not registered",
    )
    await client.refused(
        "create_session",
        pb.CreateSessionRequest(session_id="x"),
        "INVALID_ARGUMENT",
        "session spec",
    )
    await client.refused(
        "create_session",
        pb.CreateSessionRequest(
            session_id="x",
            session=pb.SessionSpec(application="svc", batch_size=2, min_instances=3),
        ),
        "INVALID_ARGUMENT",
        "min_instances (3) must be 0 or a multiple of batch_size (2)",
    )
    await client.refused(
        "create_session",
        pb.CreateSessionRequest(
            session_id="x",
            session=pb.SessionSpec(application="svc", batch_size=2, max_instances=3),
        ),
        "INVALID_ARGUMENT",
        "max_instances (3) must be a multiple of batch_size (2)",
    )
    await client.refused("get_session", pb.GetSessionRequest(session_id="x"), "NOT_FOUND")
    # Any text is an id, the empty one too.
    assert (await client.session("")).metadata.id == ""
    listed = await client.call("list_session", pb.ListSessionRequest())
    assert [s.metadata.id for s in listed.sessions] == ["my-session", ""]


async def test_open_session_gets_or_creates_and_compares_the_spec(client: Client) -> None:
    spec = pb.SessionSpec(application="svc", min_instances=0, priority=3)
    await client.refused(
        "open_session", pb.OpenSessionRequest(session_id="o"), "NOT_FOUND", "session o not found"
    )
    created = await client.call("open_session", pb.OpenSessionRequest(session_id="o", session=spec))
    assert (created.metadata.id, created.spec.priority) == ("o", 3)
    again = await client.call("open_session", pb.OpenSessionRequest(session_id="o"))
    assert again.status.creation_time == created.status.creation_time
    # Another common_data is not a mismatch; a default resreq equals the one filled in.
    same = pb.SessionSpec(
        application="svc",
        priority=3,
        common_data=b"other",
        resreq=pb.ResourceRequirement(cpu=1, memory=1 << 30),
    )
    await client.call("open_session", pb.OpenSessionRequest(session_id="o", session=same))
    await client.refused(
        "open_session",
        pb.OpenSessionRequest(session_id="o", session=pb.SessionSpec(application="svc")),
        "INVALID_ARGUMENT",
        "session o spec mismatch: priority differs (expected 3, got 0)",
    )
    await client.refused(
        "open_session",
        pb.OpenSessionRequest(
            session_id="o",
            session=pb.SessionSpec(
                application="svc", priority=3, resreq=pb.ResourceRequirement(cpu=2)
            ),
        ),
        "INVALID_ARGUMENT",
        "resreq differs",
    )
    await client.call("close_session", pb.CloseSessionRequest(session_id="o"))
    await client.refused(
        "open_session",
        pb.OpenSessionRequest(session_id="o", session=spec),
        "INVALID_ARGUMENT",
        "not open",
    )


async def test_closing_cancels_pending_tasks_and_a_closed_session_closes_again(
    client: Client,
) -> None:
    # "shy" refuses every session: its tasks stay Pending.
    await client.session("c", "shy")
    first = await client.task("c", b"a")
    await client.task("c", b"b")
    watched = client.watch("c", first.metadata.id)
    async with anyio.create_task_group() as tg:
        seen: list[list[pb.Task]] = []

        async def watch() -> None:
            seen.append(await watched)

        tg.start_soon(watch)
        await anyio.sleep(0.1)
        closed = await client.call("close_session", pb.CloseSessionRequest(session_id="c"))
    status = closed.status
    assert (status.state, status.pending, status.cancelled) == (pb.SessionState.Closed, 0, 2)
    assert status.completion_time is not None and status.events == []
    # The watcher got the Cancelled task, and the stream ended.
    ((update,),) = seen
    assert update.status.state == pb.TaskState.Cancelled
    assert update.status.completion_time is not None
    task = await client.get_task("c", first.metadata.id)
    assert task.status.state == pb.TaskState.Cancelled
    # No event for a cancellation.
    assert [e.code for e in task.status.events] == [0]
    # A finished task's watch gives it once.
    assert [t.status.state for t in await client.watch("c", "2")] == [pb.TaskState.Cancelled]
    await client.refused(
        "create_task",
        pb.CreateTaskRequest(task=pb.TaskSpec(session_id="c")),
        "INTERNAL",
        "is closed",
    )
    await anyio.sleep(0.01)
    again = await client.call("close_session", pb.CloseSessionRequest(session_id="c"))
    assert again.status.completion_time >= status.completion_time
    await client.refused(
        "close_session", pb.CloseSessionRequest(session_id="nope"), "NOT_FOUND", "session nope"
    )
    # Closed, its tasks all done (cancelled counts): it can be deleted.
    deleted = await client.call("delete_session", pb.DeleteSessionRequest(session_id="c"))
    assert deleted.metadata.id == "c"
    await client.refused("get_session", pb.GetSessionRequest(session_id="c"), "NOT_FOUND", "c")


async def test_a_session_with_running_tasks_neither_closes_nor_goes(client: Client) -> None:
    await client.session("r")
    slow = await client.task("r", b"sleep:30")

    async def running() -> bool:
        task = await client.get_task("r", slow.metadata.id)
        return bool(task.status.state == pb.TaskState.Running)

    await wait_until(running, limit=60)
    await client.refused(
        "close_session",
        pb.CloseSessionRequest(session_id="r"),
        "INTERNAL",
        "Cannot close session with running tasks",
    )
    await client.refused(
        "delete_session", pb.DeleteSessionRequest(session_id="r"), "INTERNAL", "1 open tasks"
    )
    assert (await client.get_session("r")).status.state == pb.SessionState.Open
    await client.session("empty")
    await client.refused(
        "delete_session", pb.DeleteSessionRequest(session_id="empty"), "INTERNAL", "is open"
    )


# --------------------------------------------------------------------------
# Tasks


async def test_a_task_runs_with_its_events(client: Client) -> None:
    await client.session("t", common_data=b"shared")
    created = await client.task("t", b"hello")
    assert (created.metadata.id, created.spec.session_id) == ("1", "t")
    assert (created.status.state, created.status.events) == (pb.TaskState.Pending, [])
    _ms(created.status.creation_time)
    updates = await client.watch("t", "1")
    # Never the state it was in when the watch began; the last one final.
    assert updates and updates[0].status.state != pb.TaskState.Pending
    done = updates[-1]
    assert (done.status.state, done.spec.output) == (pb.TaskState.Succeed, b"hello")
    task = await client.get_task("t", "1")
    events = [(e.code, e.message) for e in task.status.events]
    assert events == [
        (0, "Task was created with state <Pending>"),
        (1, "Task state was updated to <Running>"),
        (2, "Task was completed with state <Succeed>"),
    ]
    for event in task.status.events:
        _ms(event.creation_time)
    assert task.status.completion_time >= task.status.creation_time
    assert (await client.run("t", b"common")).spec.output == b"shared"

    failed = await client.run("t", b"fail")
    assert (failed.status.state, failed.spec.output) == (pb.TaskState.Failed, b"partial")
    assert failed.status.events[-1].code == 3
    assert failed.status.events[-1].message == "it failed"
    quiet = await client.run("t", b"quiet-fail")
    assert quiet.status.events[-1].message == "Task failed with state <Failed>"
    session = await client.get_session("t")
    assert (session.status.succeed, session.status.failed) == (2, 2)

    listed = await client.stream("list_task", pb.ListTaskRequest(session_id="t"))
    assert sorted(int(t.metadata.id) for t in listed) == [1, 2, 3, 4]
    assert {t.metadata.id: t.spec.input for t in listed}["1"] == b"hello"


async def test_task_lookups_say_what_is_wrong(client: Client) -> None:
    await client.session("l")
    await client.refused(
        "get_task",
        pb.GetTaskRequest(task_id="one", session_id="l"),
        "INVALID_ARGUMENT",
        "invalid task id",
    )
    await client.refused(
        "watch_task",
        pb.WatchTaskRequest(task_id="1x", session_id="l"),
        "INVALID_ARGUMENT",
        "invalid task id",
    )
    await client.refused(
        "get_task", pb.GetTaskRequest(task_id="1", session_id="nope"), "NOT_FOUND", "nope"
    )
    await client.refused(
        "get_task", pb.GetTaskRequest(task_id="9", session_id="l"), "NOT_FOUND", "9"
    )
    # A watch of nothing ends at once, with no message and no error.
    assert await client.watch("l", "9") == []
    assert await client.watch("nope", "1") == []
    await client.refused("list_task", pb.ListTaskRequest(session_id="nope"), "NOT_FOUND", "nope")
    assert await client.stream("list_task", pb.ListTaskRequest(session_id="l")) == []
    await client.refused("create_task", pb.CreateTaskRequest(), "INVALID_ARGUMENT", "session spec")
    await client.refused(
        "create_task",
        pb.CreateTaskRequest(task=pb.TaskSpec(session_id="nope")),
        "INTERNAL",
        "does not exist",
    )


# --------------------------------------------------------------------------
# The service contract


async def test_a_host_service_gets_its_environment_and_calls_in_order(
    tmp_path: Path, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shim sets the temporary directories only where the environment
    # does not (nox sets TMPDIR, for one).
    for name in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.delenv(name, raising=False)
    record = tmp_path / "calls"
    app = service(
        "svc",
        environments={"RECORD": str(record), "GREETING": "hi from ${HOME}"},
        delay_release=0,
    )
    async with (
        _cluster(app, slots=1) as cluster,
        await Channel.connect(cluster.endpoint) as channel,
    ):
        client = Client(channel)
        await client.session("e")
        seen = json.loads((await client.run("e", b"env")).spec.output)
        assert seen["FLAME_ENDPOINT"] == cluster.endpoint
        socket = seen["FLAME_INSTANCE_ENDPOINT"]
        assert socket.endswith(".sock") and not socket.startswith("unix:")
        assert seen["FLAME_LOG"] == os.environ.get("RUST_LOG", "info")
        # The application's environments are expanded, from the cluster's environment.
        assert seen["GREETING"] == f"hi from {os.environ['HOME']}"
        assert seen["TMPDIR"] == os.path.join(seen["cwd"], "work", "svc", "tmp")
        assert seen["argv"] == ["echo"]
        executors = await client.call("list_executor", pb.ListExecutorRequest())
        (executor,) = executors.executors
        # The socket is named after the executor, which v0.6 names with a UUID.
        assert Path(socket).name == f"{executor.metadata.id}.sock"
        assert len(executor.metadata.id) == 36
        # delay_release 0: with nothing to do, the executor lets the session go.
        await wait_until(lambda: record.read_text().endswith("sigterm\n"))
        assert record.read_text().splitlines() == ["enter e svc", "invoke 1", "leave", "sigterm"]
        # Once the service is gone, what was made for it goes too.
        await wait_until(lambda: not _exists(socket) and not _exists(seen["cwd"]))


async def test_executors_and_nodes_are_listed(tmp_path: Path, anyio_backend: str) -> None:
    async with (
        _cluster(service("svc", delay_release=600), slots=2) as cluster,
        await Channel.connect(cluster.endpoint) as channel,
    ):
        client = Client(channel)
        executors = (await client.call("list_executor", pb.ListExecutorRequest())).executors
        assert len(executors) == 2
        assert {e.status.state for e in executors} == {pb.ExecutorState.ExecutorIdle}
        nodes = (await client.call("list_nodes", pb.ListNodesRequest())).nodes
        (node,) = nodes
        assert node.metadata.name == node.spec.hostname == executors[0].spec.node
        assert node.status.state == pb.NodeState.Ready
        assert node.status.capacity.cpu == 2 and node.status.info.os
        got = await client.call("get_node", pb.GetNodeRequest(name=node.metadata.name))
        assert got.node == node
        await client.refused(
            "get_node", pb.GetNodeRequest(name="elsewhere"), "NOT_FOUND", "node elsewhere not found"
        )
        await client.session("b")
        await client.run("b", b"x")
        executors = (await client.call("list_executor", pb.ListExecutorRequest())).executors
        bound = [e for e in executors if e.status.state == pb.ExecutorState.ExecutorBound]
        assert [e.status.session_id for e in bound] == ["b"]
        assert executors[0].spec.shim == pb.Shim.Host


async def test_a_closed_sessions_executor_holds_its_slot_until_it_is_gone(
    anyio_backend: str,
) -> None:
    async with (
        _cluster(service("svc", delay_release=600), slots=1) as cluster,
        await Channel.connect(cluster.endpoint) as channel,
    ):
        client = Client(channel)
        for n in range(3):
            # The executor of the session closed just before is still leaving.
            await client.session(f"s{n}")
            assert (await client.run(f"s{n}", b"x")).status.state == pb.TaskState.Succeed
            await client.call("close_session", pb.CloseSessionRequest(session_id=f"s{n}"))
        executors = (await client.call("list_executor", pb.ListExecutorRequest())).executors
        assert len(executors) == 1


async def test_a_service_that_dies_fails_its_task_and_the_next_runs_in_a_new_one(
    client: Client,
) -> None:
    await client.session("d")
    first = await client.run("d", b"env")
    died = await client.run("d", b"die")
    assert died.status.state == pb.TaskState.Failed
    message = died.status.events[-1].message
    assert "exited with code 3" in message and "dying" in message
    second = await client.run("d", b"env")
    assert second.status.state == pb.TaskState.Succeed
    assert json.loads(first.spec.output)["pid"] != json.loads(second.spec.output)["pid"]


async def test_a_session_whose_service_cannot_bind_says_so_in_events_and_stops_trying(
    client: Client,
) -> None:
    await client.session("shy-session", "shy")
    task = await client.task("shy-session", b"x")

    async def given_up() -> bool:
        session = await client.get_session("shy-session")
        return any(e.code == 1002 for e in session.status.events)

    await wait_until(given_up, limit=120)
    session = await client.get_session("shy-session")
    codes = [e.code for e in session.status.events]
    assert codes == [1001] * 5 + [1002]
    first = session.status.events[0].message
    assert "failed to bind session with return_code 12" in first
    assert "no sessions today" in first
    assert "retry limit reached after 5/5 failed attempts" in session.status.events[-1].message
    # The task is not failed: it waits, as on a v0.6 cluster.
    assert (
        await client.get_task("shy-session", task.metadata.id)
    ).status.state == pb.TaskState.Pending
    # Events are shown by Get and List, not by the other answers.
    listed = await client.call("list_session", pb.ListSessionRequest())
    assert [len(s.status.events) for s in listed.sessions] == [6]
    closed = await client.call("close_session", pb.CloseSessionRequest(session_id="shy-session"))
    assert closed.status.events == [] and closed.status.cancelled == 1


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("exit", ["exited with code 5 before it listened", "not today"]),
        ("silent", ["did not listen"]),
    ],
)
async def test_a_service_that_does_not_start_is_a_bind_failure(
    anyio_backend: str, mode: str, words: list[str]
) -> None:
    # The one that never listens is given 2 s; the one that exits, time enough to start.
    timeout = "2" if mode == "silent" else "60"
    app = service("svc", mode, environments={"FLAME_SERVICE_REGISTER_TIMEOUT": timeout})
    async with (
        _cluster(app, slots=1) as cluster,
        await Channel.connect(cluster.endpoint) as channel,
    ):
        client = Client(channel)
        await client.session("s")
        await client.task("s", b"x")

        async def failed() -> bool:
            return bool((await client.get_session("s")).status.events)

        await wait_until(failed, limit=60)
        message = (await client.get_session("s")).status.events[0].message
        assert "return_code 11" in message
        for word in words:
            assert word in message, message


# --------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize(
    ("app", "words"),
    [
        (ApplicationConfig("log", shim="Log"), ["'log'", "Log shim", "v0.6 has not"]),
        (ApplicationConfig("sh", shim="Shell"), ["'sh'", "Shell shim", "cluster on v0.4"]),
        (ApplicationConfig("g", shim="Grpc", command="x"), ["'g'", "write shim Host"]),
        (ApplicationConfig("h"), ["'h'", "no command"]),
    ],
)
async def test_a_v06_config_with_applications_it_cannot_express_does_not_start(
    anyio_backend: str, app: ApplicationConfig, words: list[str]
) -> None:
    with pytest.raises(FlameError) as info:
        async with _cluster(app):
            pass
    assert info.value.code is FlameErrorCode.INVALID_CONFIG
    assert "on v0.6" in info.value.message
    for word in words:
        assert word in info.value.message, info.value.message


async def test_a_v04_config_with_v06_fields_or_host_does_not_start(anyio_backend: str) -> None:
    for app, words in [
        (ApplicationConfig("d", delay_release=5), ["delay_release", "v0.4 has not"]),
        (ApplicationConfig("h", shim="Host", command="x"), ["Host shim", "v0.4 has not"]),
    ]:
        with pytest.raises(FlameError) as info:
            async with LocalCluster(slots=1, applications=[app]):
                pass
        for word in words:
            assert word in info.value.message, info.value.message


async def test_a_v06_cluster_restarted_on_its_file_keeps_names_cancellations_and_events(
    tmp_path: Path, anyio_backend: str
) -> None:
    config = dict(storage=f"sqlite://{tmp_path / 'flame.db'}", slots=1)
    async with (
        _cluster(service("svc"), service("shy", "refuse"), **config) as cluster,
        await Channel.connect(cluster.endpoint) as channel,
    ):
        client = Client(channel)
        await client.session("kept")
        assert (await client.run("kept", b"one")).spec.output == b"one"
        await client.session("cancel", "shy")
        await client.task("cancel", b"never")
        await client.call("close_session", pb.CloseSessionRequest(session_id="cancel"))
        before = await client.get_task("kept", "1")
    async with (
        _cluster(service("svc"), service("shy", "refuse"), **config) as cluster,
        await Channel.connect(cluster.endpoint) as channel,
    ):
        client = Client(channel)
        after = await client.get_task("kept", "1")
        assert after == before
        cancelled = await client.get_session("cancel")
        assert (cancelled.status.state, cancelled.status.cancelled) == (pb.SessionState.Closed, 1)
        assert (await client.run("kept", b"two")).metadata.id == "2"
