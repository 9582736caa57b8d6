"""Every Frontend method of the embedded cluster, its state rules and its refusals."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from flame._errors import FlameErrorCode
from flame._proto.v04 import flame as pb
from flame.local import LocalCluster

from .conftest import Client

LOG = pb.ApplicationSpec(shim=pb.Shim.Log)


async def _until_running(client: Client, session_id: str, task_id: str) -> None:
    updates = client.channel.stream(
        client.stub.watch_task, pb.WatchTaskRequest(task_id=task_id, session_id=session_id)
    )
    async with updates as stream:
        async for update in stream:
            if update.status.state == pb.TaskState.Running:
                return
    raise AssertionError("the task ended without running")


# --------------------------------------------------------------------------
# Applications


async def test_register_get_list_update_unregister_application(client: Client) -> None:
    result = await client.register(
        "echo", pb.ApplicationSpec(shim=pb.Shim.Stdio, command="cat", arguments=["-"])
    )
    assert (result.return_code, result.message) == (0, None)

    app = await client.call("get_application", pb.GetApplicationRequest(name="echo"))
    assert app.metadata.name == "echo"
    assert (app.spec.shim, app.spec.command, app.spec.arguments) == (pb.Shim.Stdio, "cat", ["-"])
    assert app.status.state == pb.ApplicationState.Enabled
    assert abs(app.status.creation_time - time.time()) < 3600

    listed = await client.call("list_application", pb.ListApplicationRequest())
    assert sorted(a.metadata.name for a in listed.applications) == ["echo", "ping"]

    result = await client.call(
        "update_application",
        pb.UpdateApplicationRequest(name="echo", application=pb.ApplicationSpec(shim=pb.Shim.Log)),
    )
    assert result.return_code == 0
    app = await client.call("get_application", pb.GetApplicationRequest(name="echo"))
    assert app.spec.shim == pb.Shim.Log

    result = await client.call(
        "unregister_application", pb.UnregisterApplicationRequest(name="echo")
    )
    assert result.return_code == 0
    await client.refused(
        "get_application", pb.GetApplicationRequest(name="echo"), "NOT_FOUND", "'echo'"
    )


@pytest.mark.parametrize(
    ("app_name", "spec", "words"),
    [
        ("ping", LOG, ["already registered"]),
        ("", LOG, ["name is empty"]),
        ("nospec", None, ["no spec"]),
        ("wasm", pb.ApplicationSpec(shim=pb.Shim.Wasm, command="x.wasm"), ["Wasm", "cannot run"]),
        ("stdio", pb.ApplicationSpec(shim=pb.Shim.Stdio), ["Stdio", "no command"]),
        ("env", pb.ApplicationSpec(environments=["NOEQUALS"]), ["NAME=VALUE"]),
    ],
)
async def test_register_application_refusals_are_results(
    client: Client, app_name: str, spec: pb.ApplicationSpec | None, words: list[str]
) -> None:
    before = await client.call("list_application", pb.ListApplicationRequest())
    result = await client.call(
        "register_application", pb.RegisterApplicationRequest(name=app_name, application=spec)
    )
    assert result.return_code == -1
    for word in words:
        assert word in result.message
    after = await client.call("list_application", pb.ListApplicationRequest())
    assert len(after.applications) == len(before.applications)


async def test_grpc_applications_are_refused_until_the_grpc_shim_is_there(client: Client) -> None:
    from flame.local.shims import SHIMS

    result = await client.register("svc", pb.ApplicationSpec(shim=pb.Shim.Grpc, command="svc"))
    from flame.local._model import Shim

    if Shim.GRPC in SHIMS:
        assert result.return_code == 0
    else:
        assert result.return_code == -1 and "Grpc" in result.message


async def test_application_refusals(client: Client) -> None:
    await client.refused(
        "get_application", pb.GetApplicationRequest(name="nope"), "NOT_FOUND", "not registered"
    )
    await client.refused(
        "unregister_application",
        pb.UnregisterApplicationRequest(name="nope"),
        "NOT_FOUND",
        "'nope'",
    )
    await client.refused(
        "update_application",
        pb.UpdateApplicationRequest(name="nope", application=LOG),
        "NOT_FOUND",
    )
    await client.refused(
        "get_application", pb.GetApplicationRequest(name=""), "INVALID_ARGUMENT", "empty"
    )
    # Update validates the new spec as registering does, and changes nothing if refused.
    result = await client.call(
        "update_application",
        pb.UpdateApplicationRequest(name="ping", application=pb.ApplicationSpec(shim=pb.Shim.Wasm)),
    )
    assert result.return_code == -1 and "Wasm" in result.message
    app = await client.call("get_application", pb.GetApplicationRequest(name="ping"))
    assert app.spec.shim == pb.Shim.Log
    # An application in use by an open session stays.
    session_id = await client.session()
    await client.refused(
        "unregister_application",
        pb.UnregisterApplicationRequest(name="ping"),
        "FAILED_PRECONDITION",
        f"session(s) {session_id}",
    )
    await client.call("close_session", pb.CloseSessionRequest(session_id=session_id))
    result = await client.call(
        "unregister_application", pb.UnregisterApplicationRequest(name="ping")
    )
    assert result.return_code == 0


# --------------------------------------------------------------------------
# Sessions


async def test_session_lifecycle_ids_counters_and_times(client: Client) -> None:
    first = await client.call(
        "create_session",
        pb.CreateSessionRequest(
            session=pb.SessionSpec(application="ping", slots=1, common_data=b"common")
        ),
    )
    assert first.metadata.id == "1"
    assert first.spec.common_data == b"common"
    assert first.status.state == pb.SessionState.Open
    assert first.status.completion_time is None
    assert abs(first.status.creation_time - time.time()) < 3600
    assert await client.counters("1") == (0, 0, 0, 0)
    second = await client.session()
    assert second == "2"

    for expected in ("1", "2", "3"):
        done = await client.run("1", b"x")
        assert done.metadata.id == expected
        assert done.spec.session_id == "1"
        assert done.status.state == pb.TaskState.Succeed
        assert done.status.completion_time is not None
    assert await client.counters("1") == (0, 0, 3, 0)
    # Task ids count within each session.
    assert (await client.run(second)).metadata.id == "1"

    listed = await client.call("list_session", pb.ListSessionRequest())
    assert [s.metadata.id for s in listed.sessions] == ["1", "2"]

    closed = await client.call("close_session", pb.CloseSessionRequest(session_id="1"))
    assert closed.status.state == pb.SessionState.Closed
    assert closed.status.completion_time is not None
    # Closing again is harmless.
    again = await client.call("close_session", pb.CloseSessionRequest(session_id="1"))
    assert again.status.state == pb.SessionState.Closed

    await client.refused(
        "create_task",
        pb.CreateTaskRequest(task=pb.TaskSpec(session_id="1")),
        "FAILED_PRECONDITION",
        "closed",
    )
    assert await client.counters("1") == (0, 0, 3, 0)

    reopened = await client.call("open_session", pb.OpenSessionRequest(session_id="1"))
    assert reopened.status.state == pb.SessionState.Open
    assert reopened.status.completion_time is None
    assert (await client.run("1")).metadata.id == "4"
    opened = await client.call("open_session", pb.OpenSessionRequest(session_id="1"))
    assert opened.status.state == pb.SessionState.Open

    await client.refused(
        "delete_session", pb.DeleteSessionRequest(session_id="1"), "FAILED_PRECONDITION", "open"
    )
    await client.call("close_session", pb.CloseSessionRequest(session_id="1"))
    deleted = await client.call("delete_session", pb.DeleteSessionRequest(session_id="1"))
    assert deleted.metadata.id == "1"
    assert deleted.status.succeed == 4
    await client.refused("get_session", pb.GetSessionRequest(session_id="1"), "NOT_FOUND", "'1'")
    await client.refused("get_task", pb.GetTaskRequest(session_id="1", task_id="1"), "NOT_FOUND")
    # Ids are never handed out twice.
    assert await client.session() == "3"


async def test_close_waits_for_pending_and_running_tasks(client: Client) -> None:
    result = await client.register("sh", pb.ApplicationSpec(shim=pb.Shim.Shell))
    assert result.return_code == 0
    session_id = await client.session("sh")
    blocker = await client.task(session_id, b"sleep 30")
    await _until_running(client, session_id, blocker)
    await client.refused(
        "close_session",
        pb.CloseSessionRequest(session_id=session_id),
        "FAILED_PRECONDITION",
        "1 running",
    )
    await client.refused(
        "delete_task",
        pb.DeleteTaskRequest(session_id=session_id, task_id=blocker),
        "FAILED_PRECONDITION",
        "running",
    )
    session = await client.call("get_session", pb.GetSessionRequest(session_id=session_id))
    assert session.status.state == pb.SessionState.Open


@pytest.mark.parametrize(
    ("spec", "status", "words"),
    [
        (None, "INVALID_ARGUMENT", ["needs `session`"]),
        (pb.SessionSpec(application=""), "INVALID_ARGUMENT", ["no application"]),
        (pb.SessionSpec(application="nope"), "NOT_FOUND", ["'nope'", "not registered"]),
        (pb.SessionSpec(application="ping", slots=-1), "INVALID_ARGUMENT", ["slots"]),
        (pb.SessionSpec(application="ping", slots=3), "INVALID_ARGUMENT", ["3 slots", "2 in all"]),
    ],
)
async def test_create_session_refusals(
    client: Client, spec: pb.SessionSpec | None, status: str, words: list[str]
) -> None:
    await client.refused("create_session", pb.CreateSessionRequest(session=spec), status, *words)
    listed = await client.call("list_session", pb.ListSessionRequest())
    assert listed.sessions == []
    # A refused call used no id.
    assert await client.session() == "1"


@pytest.mark.parametrize(
    "method", ["get_session", "open_session", "close_session", "delete_session"]
)
async def test_session_id_refusals(client: Client, method: str) -> None:
    request_type = {
        "get_session": pb.GetSessionRequest,
        "open_session": pb.OpenSessionRequest,
        "close_session": pb.CloseSessionRequest,
        "delete_session": pb.DeleteSessionRequest,
    }[method]
    await client.refused(method, request_type(session_id="abc"), "INVALID_ARGUMENT", "'abc'")
    await client.refused(method, request_type(session_id=""), "INVALID_ARGUMENT")
    await client.refused(method, request_type(session_id="1.5"), "INVALID_ARGUMENT")
    await client.refused(method, request_type(session_id="7"), "NOT_FOUND", "'7'")
    await client.refused(method, request_type(session_id="-3"), "NOT_FOUND")
    await client.refused(method, request_type(session_id="9" * 40), "NOT_FOUND")


# --------------------------------------------------------------------------
# Tasks


async def test_task_get_watch_delete(client: Client) -> None:
    session_id = await client.session()
    task_id = await client.task(session_id, b"hello")
    updates = await client.watch(session_id, task_id)
    assert updates[-1].status.state == pb.TaskState.Succeed
    assert all(u.status.state != pb.TaskState.Succeed for u in updates[:-1])
    task = await client.call("get_task", pb.GetTaskRequest(session_id=session_id, task_id=task_id))
    assert task.spec.input == b"hello"
    assert task.spec.output is None  # the Log shim gives no output
    assert task.status.completion_time is not None
    # Watching a finished task gives one message and the end.
    again = await client.watch(session_id, task_id)
    assert [u.status.state for u in again] == [pb.TaskState.Succeed]

    deleted = await client.call(
        "delete_task", pb.DeleteTaskRequest(session_id=session_id, task_id=task_id)
    )
    assert deleted.metadata.id == task_id
    assert await client.counters(session_id) == (0, 0, 0, 0)
    await client.refused(
        "get_task", pb.GetTaskRequest(session_id=session_id, task_id=task_id), "NOT_FOUND"
    )
    # Ids go on counting.
    assert await client.task(session_id) == "2"


async def test_watch_sends_every_state_up_to_the_end(client: Client) -> None:
    result = await client.register("sh", pb.ApplicationSpec(shim=pb.Shim.Shell))
    assert result.return_code == 0
    session_id = await client.session("sh")
    # Fill both slots' worth of sessions' executors: one session, one executor per task.
    task_id = await client.task(session_id, b"sleep 0.3; echo done")
    updates = await client.watch(session_id, task_id)
    states = [u.status.state for u in updates]
    assert states[-1] == pb.TaskState.Succeed
    assert states in (
        [pb.TaskState.Pending, pb.TaskState.Running, pb.TaskState.Succeed],
        [pb.TaskState.Running, pb.TaskState.Succeed],
    )
    assert updates[-1].spec.output == b"done\n"
    assert all(u.spec.output is None for u in updates[:-1])
    assert all(u.status.completion_time is None for u in updates[:-1])


@pytest.mark.parametrize("method", ["get_task", "delete_task", "watch_task"])
async def test_task_id_refusals(client: Client, method: str) -> None:
    session_id = await client.session()
    request_type = {
        "get_task": pb.GetTaskRequest,
        "delete_task": pb.DeleteTaskRequest,
        "watch_task": pb.WatchTaskRequest,
    }[method]

    async def refused(task_id: str, session: str, status: str, *words: str) -> None:
        request = request_type(task_id=task_id, session_id=session)
        if method == "watch_task":
            with pytest.raises(Exception) as info:
                await client.watch(session, task_id)
            assert f": {status}: " in str(info.value), info.value
            for word in words:
                assert word in str(info.value)
        else:
            await client.refused(method, request, status, *words)

    await refused("x", session_id, "INVALID_ARGUMENT", "task id 'x'")
    await refused("", session_id, "INVALID_ARGUMENT", "task id is empty")
    await refused("1", "", "INVALID_ARGUMENT", "session id is empty")
    await refused("1", "y", "INVALID_ARGUMENT", "session id 'y'")
    await refused("1", session_id, "NOT_FOUND", "task '1'")
    await refused("1", "99", "NOT_FOUND", "session '99'")


async def test_create_task_refusals(client: Client) -> None:
    await client.refused(
        "create_task", pb.CreateTaskRequest(task=None), "INVALID_ARGUMENT", "needs `task`"
    )
    await client.refused(
        "create_task",
        pb.CreateTaskRequest(task=pb.TaskSpec(session_id="")),
        "INVALID_ARGUMENT",
        "no session",
    )
    await client.refused(
        "create_task",
        pb.CreateTaskRequest(task=pb.TaskSpec(session_id="z")),
        "INVALID_ARGUMENT",
        "'z'",
    )
    await client.refused(
        "create_task", pb.CreateTaskRequest(task=pb.TaskSpec(session_id="5")), "NOT_FOUND"
    )


async def test_messages_above_the_limit_are_refused() -> None:
    from flame._transport import Channel
    from flame.local import ApplicationConfig, ClusterConfig

    config = ClusterConfig(
        slots=1, max_message_bytes=4096, applications=[ApplicationConfig("ping")]
    )
    async with LocalCluster(config) as cluster, await Channel.connect(cluster.endpoint) as channel:
        client = Client(channel)
        await client.refused(
            "create_session",
            pb.CreateSessionRequest(
                session=pb.SessionSpec(application="ping", common_data=b"c" * 4097)
            ),
            "INVALID_ARGUMENT",
            "4097 bytes",
            "4096",
        )
        session_id = await client.session()
        await client.refused(
            "create_task",
            pb.CreateTaskRequest(task=pb.TaskSpec(session_id=session_id, input=b"i" * 5000)),
            "INVALID_ARGUMENT",
            "5000 bytes",
        )
        # Past the data and its envelope, refused at the server's edge from
        # the message's length prefix, unread.
        await client.refused(
            "create_task",
            pb.CreateTaskRequest(
                task=pb.TaskSpec(session_id=session_id, input=b"i" * (4096 + 65 * 1024))
            ),
            "RESOURCE_EXHAUSTED",
            "this server reads (4,096 bytes of data",
        )
        assert await client.counters(session_id) == (0, 0, 0, 0)
        assert (await client.run(session_id, b"i" * 4096)).status.state == pb.TaskState.Succeed


async def test_deleting_a_pending_task_ends_its_watch() -> None:
    from flame._transport import Channel
    from flame.local import ApplicationConfig

    # One slot, held by a long task, keeps the second task pending.
    small = LocalCluster(slots=1, applications=[ApplicationConfig("ping")])
    async with small, await Channel.connect(small.endpoint) as channel:
        client = Client(channel)
        result = await client.register("sh", pb.ApplicationSpec(shim=pb.Shim.Shell))
        assert result.return_code == 0
        session_id = await client.session("sh")
        await client.task(session_id, b"sleep 30")
        waiting = await client.task(session_id, b"echo never")
        assert await client.counters(session_id) in ((1, 1, 0, 0), (2, 0, 0, 0))
        outcome: list[BaseException] = []

        async def watch() -> None:
            try:
                await client.watch(session_id, waiting)
            except Exception as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.sleep(0.2)
            deleted = await client.call(
                "delete_task", pb.DeleteTaskRequest(session_id=session_id, task_id=waiting)
            )
            assert deleted.status.state == pb.TaskState.Pending
        assert outcome and "was deleted" in str(outcome[0])
        pending, running, _, _ = await client.counters(session_id)
        assert pending == 0 and running == 1


async def test_endpoint_outside_the_cluster_is_an_error() -> None:
    cluster = LocalCluster(slots=1)
    with pytest.raises(Exception) as info:
        _ = cluster.endpoint
    assert getattr(info.value, "code", None) is FlameErrorCode.INVALID_STATE


def test_a_refusal_reaches_the_client_with_its_code() -> None:
    # The status the frontend answers with is read back by the client's table
    # as the code the session manager refused with.
    from flame._errors import FlameError
    from flame._transport._status import Status, code_for_status
    from flame.local.frontend._serving import _refusal
    from flame.local.frontend._v04 import _STATUS

    for code in (
        FlameErrorCode.NOT_FOUND,
        FlameErrorCode.ALREADY_EXISTS,
        FlameErrorCode.INVALID_ARGUMENT,
        FlameErrorCode.INVALID_STATE,
        FlameErrorCode.UNAVAILABLE,
        FlameErrorCode.INTERNAL,
    ):
        refusal: Any = _refusal(FlameError(code, "why"), _STATUS)
        assert code_for_status(Status(refusal.status.value), refusal.message) is code
