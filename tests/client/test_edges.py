"""What the client does at the edges: sizes, a cluster that stops answering, tokens, deleting.

* Sizes: a task as large as the cluster accepts comes back whole (its reply
  carries input and output); a request over the limit is refused before a
  byte is sent; an output over the cluster's limit fails its task, saying
  why.
* A half-open connection (the peer stops answering without closing, here a
  proxy that wedges): the keepalive ends a watch with UNAVAILABLE, and the
  next call opens a new connection.
* The token: sent on every call, from ``connect(auth_token=...)``,
  ``FLAME_AUTH_TOKEN`` or the config file; refused without it, never echoed.
* ``delete_session``: a closed session goes, an open one is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from stall_proxy import stall_proxy
from v04_server import V04Server

import flame
from flame import FlameError, FlameErrorCode, Shim, TaskState
from flame.local import ClusterConfig, LocalCluster

#: A hang guard, not a timing assertion.
BOUND = 60.0

TOKEN = "s3cret-T0ken_for-tests"


@pytest.fixture
def no_ambient_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token from the environment or a config file, unless the test sets one."""
    monkeypatch.delenv("FLAME_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


async def _echo_session(conn: flame.Connection) -> flame.Session:
    await conn.register_application("echo", {"shim": Shim.STDIO, "command": "cat"})
    return await conn.create_session({"application": "echo", "slots": 1})


# --------------------------------------------------------------------------
# Sizes


async def test_a_task_as_large_as_the_cluster_takes_comes_back_whole(
    conn: flame.Connection,
) -> None:
    # 2.1 MiB in and out: the reply carries 4.2 MiB, over one message limit.
    data = bytes(range(256)) * (2_200_000 // 256)
    async with await _echo_session(conn) as session:
        with anyio.fail_after(BOUND):
            task = await session.run_task(data)
            assert task.state is TaskState.SUCCEED
            assert task.output == data
            again = await session.get_task(task.id)
            assert again.input == data and again.output == data
            # The largest input the cluster accepts, echoed.
            largest = b"L" * flame._transport.MAX_MESSAGE_BYTES
            task = await session.run_task(largest)
            assert task.output == largest


async def test_a_request_over_the_limit_is_refused_before_a_byte_is_sent(
    cluster: LocalCluster,
) -> None:
    async with stall_proxy(cluster.endpoint) as proxy:
        conn = await flame.connect(proxy.endpoint, max_message_bytes=64 * 1024)
        async with conn, await _echo_session(conn) as session:
            assert (await session.run_task(b"small")).output == b"small"
            sent = proxy.upstream_bytes
            with pytest.raises(FlameError) as raised:
                await session.create_task(b"x" * (200 * 1024))
            assert proxy.upstream_bytes == sent
    assert raised.value.code is FlameErrorCode.INVALID_ARGUMENT
    message = raised.value.message
    assert "CreateTask" in message and "nothing was sent" in message
    assert "the request is 204,8" in message  # the input and a few bytes around it
    assert "65,536 bytes of data, max_message_bytes" in message


async def test_an_output_over_the_clusters_limit_fails_its_task(anyio_backend: str) -> None:
    config = ClusterConfig(slots=1, max_message_bytes=64 * 1024)
    async with LocalCluster(config) as cluster, await flame.connect(cluster.endpoint) as conn:
        await conn.register_application("sh", {"shim": Shim.SHELL})
        async with await conn.create_session({"application": "sh", "slots": 1}) as session:
            failed = await session.run_task(b"head -c 100000 /dev/zero")
            assert failed.state is TaskState.FAILED
            said = (failed.output or b"").decode()
            assert "the task's output is 100,000 bytes, over the 65,536" in said
            fitting = await session.run_task(b"head -c 65536 /dev/zero")
            assert fitting.output == bytes(65536)


# --------------------------------------------------------------------------
# A half-open connection


async def test_a_watch_on_a_dead_connection_ends_and_the_next_call_reconnects(
    cluster: LocalCluster,
) -> None:
    keepalive = flame.Keepalive(interval=0.2, timeout=0.5)
    async with stall_proxy(cluster.endpoint) as proxy:
        conn = await flame.connect(proxy.endpoint, keepalive=keepalive)
        async with conn:
            await conn.register_application("sh", {"shim": Shim.SHELL})
            session = await conn.create_session({"application": "sh", "slots": 1})
            task = await session.create_task(b"sleep 60")
            proxy.stall()
            with anyio.fail_after(BOUND), pytest.raises(FlameError) as raised:
                async for _ in session.watch_task(task.id):
                    pass
            assert raised.value.code is FlameErrorCode.UNAVAILABLE
            assert "keepalive PING" in raised.value.message
            # A unary call on the dead connection would wait for its whole
            # deadline; the next one goes on a new connection instead.
            with anyio.fail_after(BOUND):
                assert (await session.get_task(task.id)).state is TaskState.RUNNING
            assert proxy.connections == 2
            # The new connection is watched too.
            proxy.stall()
            with anyio.fail_after(BOUND), pytest.raises(FlameError) as raised:
                await conn.get_session(session.id)
            assert raised.value.code is FlameErrorCode.UNAVAILABLE


async def test_without_keepalive_a_dead_connection_is_left_to_the_deadline(
    cluster: LocalCluster,
) -> None:
    async with stall_proxy(cluster.endpoint) as proxy:
        conn = await flame.connect(proxy.endpoint, keepalive=None, request_timeout=1.0)
        async with conn:
            await conn.list_sessions()
            proxy.stall()
            with anyio.fail_after(BOUND), pytest.raises(FlameError) as raised:
                await conn.list_sessions()
    assert raised.value.code is FlameErrorCode.TIMEOUT


def test_keepalive_settings_are_checked() -> None:
    for bad in ({"interval": 0}, {"timeout": -1}, {"interval": "5"}):
        with pytest.raises(FlameError) as raised:
            flame.Keepalive(**bad)  # type: ignore[arg-type]
        assert raised.value.code is FlameErrorCode.INVALID_ARGUMENT


# --------------------------------------------------------------------------
# The token


@pytest.fixture
async def guarded(anyio_backend: str, no_ambient_token: None) -> AsyncIterator[LocalCluster]:
    async with LocalCluster(ClusterConfig(slots=1, auth_token=TOKEN)) as running:
        yield running


async def test_a_cluster_with_a_token_refuses_calls_without_it(guarded: LocalCluster) -> None:
    # Finding out the wire is the first call: connecting says it at once.
    with pytest.raises(FlameError) as probing:
        await flame.connect(guarded.endpoint)
    async with await flame.connect(guarded.endpoint, wire="v0.4") as conn:
        with pytest.raises(FlameError) as missing:
            await conn.list_sessions()
    for error in (probing.value, missing.value):
        assert error.code is FlameErrorCode.INVALID_CONFIG
        assert "UNAUTHENTICATED" in error.message
        assert "requires a token: the call carried no token" in error.message
    wrong = "not-" + TOKEN
    async with await flame.connect(guarded.endpoint, auth_token=wrong, wire="v0.4") as conn:
        with pytest.raises(FlameError) as refused:
            await conn.list_sessions()
        # Every kind of call is refused, the per-task ones included.
        with pytest.raises(FlameError):
            await conn.session_client("1").get_task("1")
    assert "is not this server's" in refused.value.message
    assert TOKEN not in refused.value.message and wrong not in refused.value.message


async def test_the_token_is_sent_from_connect_the_environment_or_the_config_file(
    guarded: LocalCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def works(**options: object) -> None:
        async with await flame.connect(guarded.endpoint, **options) as conn:  # type: ignore[arg-type]
            await conn.register_application("ping", {"shim": Shim.LOG})
            async with await conn.create_session({"application": "ping"}) as session:
                task = await session.run_task(b"hello")
                assert task.state is TaskState.SUCCEED
                assert (await session.get_task(task.id)).id == task.id
            await conn.unregister_application("ping")

    await works(auth_token=TOKEN)
    config = tmp_path / ".flame" / "flame-conf.yaml"
    config.parent.mkdir()
    config.write_text(f"name: flame\nendpoint: {guarded.endpoint}\nauth_token: '{TOKEN}'\n")
    await works()
    config.unlink()
    monkeypatch.setenv("FLAME_AUTH_TOKEN", TOKEN)
    await works()


async def test_a_token_that_cannot_be_sent_is_refused_before_connecting(
    no_ambient_token: None,
) -> None:
    with pytest.raises(FlameError) as raised:
        await flame.connect("http://127.0.0.1:9", auth_token="two words")
    assert raised.value.code is FlameErrorCode.INVALID_CONFIG
    assert "two words" not in raised.value.message


# --------------------------------------------------------------------------
# Deleting a session


async def _delete_round(conn: flame.Connection) -> None:
    await conn.register_application("app", {"shim": Shim.LOG})
    session = await conn.create_session({"application": "app"})
    await session.run_task(b"one")
    with pytest.raises(FlameError) as open_one:
        await conn.delete_session(session.id)
    assert open_one.value.code is FlameErrorCode.INVALID_STATE
    await session.close()
    deleted = await conn.delete_session(session.id)
    assert deleted.id == session.id
    with pytest.raises(FlameError) as gone:
        await conn.get_session(session.id)
    assert gone.value.code is FlameErrorCode.NOT_FOUND
    assert session.id not in [s.id for s in await conn.list_sessions()]
    with pytest.raises(FlameError) as again:
        await conn.delete_session(session.id)
    assert again.value.code in (FlameErrorCode.NOT_FOUND, FlameErrorCode.INVALID_STATE)


async def test_delete_session_on_the_embedded_cluster(conn: flame.Connection) -> None:
    await _delete_round(conn)


async def test_delete_session_on_a_v04_server(v04: V04Server, v04_conn: flame.Connection) -> None:
    await _delete_round(v04_conn)
    assert (await v04.on_loop(lambda: v04.frontend.calls.count("DeleteSession"))) == 3


async def test_delete_session_checks_its_argument(conn: flame.Connection) -> None:
    with pytest.raises(FlameError) as raised:
        await conn.delete_session("")
    assert raised.value.code is FlameErrorCode.INVALID_ARGUMENT
