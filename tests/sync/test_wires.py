"""The blocking API on the v0.6 wire: the calls v0.6 brought, with no await."""

from __future__ import annotations

from collections.abc import Iterator

import anyio.from_thread
import pytest
from v06_server import serve_v06

import flame.sync
from flame import FlameError, FlameErrorCode, Shim, TaskState


@pytest.fixture
def v06_endpoint() -> Iterator[str]:
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve_v06()) as server,
    ):
        yield server.endpoint


def test_the_v06_calls_without_await(v06_endpoint: str, backend: str) -> None:
    with flame.sync.connect(v06_endpoint, backend=backend) as conn:
        assert conn.wire == "v0.6"
        conn.register_application("app", {"shim": Shim.HOST, "command": "/bin/service"})
        assert conn.get_application("app").shim is Shim.HOST
        session = conn.create_session({"application": "app"}, session_id="box")
        assert conn.open_session("box", {"application": "app"}).id == "box"
        session.run_tasks([b"a", b"b", b"c"])
        with conn.list_tasks("box") as tasks:
            listed = sorted(task.input or b"" for task in tasks)
        assert listed == [b"a", b"b", b"c"]
        assert [e.state for e in conn.list_executors()] == [flame.ExecutorState.IDLE] * 2
        assert [n.state for n in conn.list_nodes()] == [flame.NodeState.READY]
        pending = session.create_task(b"steps")
        session.close()
        assert session.get_task(pending.id).state is TaskState.CANCELLED
        with pytest.raises(FlameError) as caught:
            conn.create_session({"application": "app"}, session_id="box")
        assert caught.value.code is FlameErrorCode.ALREADY_EXISTS
