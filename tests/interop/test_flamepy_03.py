"""flamepy 0.3.0, a reference client of Flame v0.4, against ``flame local`` on v0.4, its default."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from .conftest import flame_local, needs_flamepy

pytestmark = needs_flamepy("0.3.0")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # flamepy 0.3.0 can neither register nor list applications: its client
    # uses ApplicationSpec.url, which its own generated code lacks. The config
    # registers the application; the tests are of sessions and tasks.
    config = tmp_path_factory.mktemp("flamepy-03") / "flame-conf.yaml"
    config.write_text("applications:\n  - {name: sh, shim: Shell}\n")
    yield from flame_local("--slots", "2", "--config", str(config))


def test_sessions_and_tasks_with_flamepy_03(endpoint: str) -> None:
    asyncio.run(_sessions_and_tasks(endpoint))


async def _sessions_and_tasks(endpoint: str) -> None:
    import flamepy

    conn = await flamepy.Connection.connect(endpoint)
    try:
        session = await conn.create_session(flamepy.SessionAttributes(application="sh", slots=1))
        assert session.id == "1"
        done = await session.invoke(b"echo hello")
        assert (done.state, done.output) == (flamepy.TaskState.SUCCEED, b"hello\n")
        created = [await session.create_task(b"echo %d" % n) for n in range(10)]
        assert [task.state for task in created] == [flamepy.TaskState.PENDING] * 10
        outputs = []
        for task in created:
            watcher = await session.watch_task(task.id)
            async for update in watcher:
                if update.is_completed():
                    outputs.append(update.output)
                    break
        assert outputs == [b"%d\n" % n for n in range(10)]
        failed = await session.invoke(b"exit 3")
        assert failed.state == flamepy.TaskState.FAILED
        assert b"exited with code 3" in failed.output
        got = await session.get_task(created[0].id)
        assert (got.input, got.output) == (b"echo 0", b"0\n")
        seen = await conn.get_session(session.id)
        assert (seen.succeed, seen.failed) == (11, 1)
        assert [s.id for s in await conn.list_sessions()] == ["1"]
        closed = await conn.close_session(session.id)
        assert closed.state == flamepy.SessionState.CLOSED
    finally:
        await conn.close()
