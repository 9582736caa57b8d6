"""flamepy 0.6.0, Flame v0.6's official client and service runtime, against flame local on v0.6.

Its client registers applications, creates, opens, lists and closes
sessions and runs tasks; its services (a ``FlameService`` run by
``flamepy.run``, and a ``FlameInstance`` entrypoint) run as Host
applications. Nothing of flamepy is changed or wrapped.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent.futures import wait
from typing import Any

import pytest

from .conftest import HERE, flame_local, needs_flamepy, service_environment

pytestmark = needs_flamepy("0.6.0")

SERVICES = str(HERE / "_flamepy_services.py")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    yield from flame_local("--wire", "v0.6", "--slots", "2")


@pytest.fixture
def conn(endpoint: str) -> Iterator[Any]:
    import flamepy

    connection = flamepy.connect(endpoint)
    try:
        yield connection
    finally:
        connection.close()


def _register(conn: Any, name: str, kind: str) -> None:
    import flamepy

    conn.register_application(
        name,
        flamepy.ApplicationAttributes(
            shim=flamepy.Shim.HOST,
            command=sys.executable,
            arguments=[SERVICES, kind],
            environments=service_environment(),
            description=f"a flamepy {kind} service",
        ),
    )


def test_applications_and_the_cluster_as_flamepy_sees_them(conn: Any) -> None:
    import flamepy

    _register(conn, "apps-echo", "core")
    app = conn.get_application("apps-echo")
    assert (app.name, app.shim, app.state) == (
        "apps-echo",
        flamepy.Shim.HOST,
        flamepy.ApplicationState.ENABLED,
    )
    assert (app.command, app.arguments) == (sys.executable, [SERVICES, "core"])
    assert (app.max_instances, app.delay_release) == (1_000_000, 60)
    assert abs(app.creation_time.timestamp() - time.time()) < 600  # milliseconds, read as such
    assert "apps-echo" in [a.name for a in conn.list_applications()]
    assert conn.get_application("nope") is None
    with pytest.raises(flamepy.FlameError, match="already registered"):
        _register(conn, "apps-echo", "core")
    executors = conn.list_executors()
    assert len(executors) == 2
    (node,) = conn.list_nodes()
    assert {e.spec.node for e in executors} == {node.metadata.name}
    conn.unregister_application("apps-echo")
    assert conn.get_application("apps-echo") is None


def test_sessions_and_tasks_with_a_flamepy_service(conn: Any) -> None:
    import flamepy

    _register(conn, "echo", "core")
    session = conn.create_session(
        flamepy.SessionAttributes(application="echo", common_data=b"shared")
    )
    assert session.id.startswith("echo-")  # flamepy names it
    assert session.state == flamepy.SessionState.OPEN
    assert abs(session.creation_time.timestamp() - time.time()) < 600
    assert session.invoke(b"hello") == b"hello"
    assert session.invoke(b"common") == b"shared"
    futures = [session.run(b"%d" % n) for n in range(20)]
    wait(futures, timeout=120)
    assert [f.result() for f in futures] == [b"%d" % n for n in range(20)]
    with pytest.raises(flamepy.FlameError) as failed:
        session.invoke(b"fail")
    assert "asked to fail" in failed.value.message

    tasks = list(session.list_tasks())
    assert len(tasks) == 23
    states = sorted(t.state for t in tasks)
    assert states == [flamepy.TaskState.SUCCEED] * 22 + [flamepy.TaskState.FAILED]
    done = session.get_task("1")
    assert (done.input, done.output) == (b"hello", b"hello")
    assert [e.code for e in done.events] == [0, 1, 2]

    seen = conn.get_session(session.id)
    assert (seen.succeed, seen.failed, seen.pending) == (22, 1, 0)
    assert session.id in [s.id for s in conn.list_sessions()]
    # open_session: the session as it is; a spec that differs is refused.
    opened = conn.open_session(session.id)
    assert opened.id == session.id
    with pytest.raises(flamepy.FlameError) as mismatch:
        conn.open_session(
            session.id, flamepy.SessionAttributes(application="echo", max_instances=3)
        )
    assert mismatch.value.code == flamepy.FlameErrorCode.INVALID_ARGUMENT
    closed = conn.close_session(session.id)
    assert closed.state == flamepy.SessionState.CLOSED
    assert closed.completion_time is not None
    with pytest.raises(flamepy.FlameError):
        conn.open_session(session.id)


def test_open_session_creates_with_a_chosen_id(conn: Any) -> None:
    import flamepy

    _register(conn, "opened", "core")
    spec = flamepy.SessionAttributes(application="opened")
    created = conn.open_session("my-own-id", spec)
    assert created.id == "my-own-id"
    assert created.invoke(b"x") == b"x"
    again = conn.open_session("my-own-id", spec)
    assert again.creation_time == created.creation_time
    with pytest.raises(flamepy.FlameError) as missing:
        conn.open_session("no-such-id")
    assert missing.value.code == flamepy.FlameErrorCode.NOT_FOUND
    created.close()


def test_a_flamepy_instance_entrypoint_runs_as_a_host_application(conn: Any) -> None:
    import cloudpickle
    import flamepy

    _register(conn, "adder", "instance")
    session = conn.create_session(flamepy.SessionAttributes(application="adder"))
    try:
        assert cloudpickle.loads(session.invoke(cloudpickle.dumps(41))) == 42
    finally:
        session.close()
