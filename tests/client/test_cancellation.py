"""Cancelling run_task and watch_task from outside, or leaving a watch early, leaves nothing.

"Nothing" is checked three ways: the server's WatchTask handler has ended
(the stream was closed), the tasks of the client's backend (asyncio's, or
trio's whole task tree, system tasks included) are back to what they were,
and so are the process's threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
import sniffio
from v04_server import V04Server

import flame
from flame.local import LocalCluster


def _threads() -> set[threading.Thread]:
    # Worker pools (asyncio's default executor, trio's thread cache) keep idle
    # threads for reuse, whoever used them last: they are not ours to count.
    pooled = ("asyncio_", "Trio thread", "ThreadPoolExecutor")
    return {t for t in threading.enumerate() if not t.name.startswith(pooled)}


async def _loop_tasks(conn: flame.Connection) -> frozenset[Any]:
    if sniffio.current_async_library() == "asyncio":
        return frozenset(asyncio.all_tasks()) - {asyncio.current_task()}
    import trio

    found: set[Any] = set()
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        found.add(task)
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return frozenset(found) - {trio.lowlevel.current_task()}


async def _session(conn: flame.Connection) -> flame.Session:
    await conn.register_application("app", {"shim": flame.Shim.SHELL})
    return await conn.create_session(flame.SessionAttributes(application="app"))


class _Quiet(flame.TaskInformer):
    def __init__(self) -> None:
        self.updates: list[flame.TaskState] = []

    def on_update(self, task: flame.Task) -> None:
        self.updates.append(task.state)


async def _run_plain(session: flame.SessionClient, task_id: str, data: bytes) -> None:
    await session.run_task(data)


async def _run_informed(session: flame.SessionClient, task_id: str, data: bytes) -> None:
    await session.run_task(data, _Quiet())


async def _watch_for(session: flame.SessionClient, task_id: str, data: bytes) -> None:
    async for _ in session.watch_task(task_id):
        pass


async def _watch_with(session: flame.SessionClient, task_id: str, data: bytes) -> None:
    async with session.watch_task(task_id) as updates:
        async for _ in updates:
            pass


WAYS: dict[str, Callable[[flame.SessionClient, str, bytes], Awaitable[None]]] = {
    "run_task": _run_plain,
    "run_task-informer": _run_informed,
    "watch_task-for": _watch_for,
    "watch_task-with": _watch_with,
}


async def _settle(conn: flame.Connection, baseline: frozenset[Any]) -> None:
    # No task that was not there before may be left. Under asyncio the
    # servers' own tasks share the loop: wait for them to end too. A leak
    # fails here, by the hang guard.
    with anyio.fail_after(20):
        # Polled: the server's tasks may live on another loop.
        while await _loop_tasks(conn) - baseline:  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def _all_done(conn: flame.Connection, session: flame.SessionClient) -> None:
    with anyio.fail_after(20):
        while True:
            now = await conn.get_session(session.id)
            if now.pending == now.running == 0:  # polled, as above
                return
            await anyio.sleep(0.01)


@pytest.mark.parametrize("way", list(WAYS))
async def test_cancel_from_outside_leaves_nothing(v04: V04Server, way: str) -> None:
    threads = _threads()
    async with await flame.connect(v04.endpoint) as conn:
        session = await _session(conn)
        baseline = await _loop_tasks(conn)
        held = await session.create_task(b"hold")  # what the watch ways watch
        async with anyio.create_task_group() as group:
            group.start_soon(WAYS[way], session, held.id, b"hold")
            await v04.wait_for_watches(1)
            group.cancel_scope.cancel()
        # The server's handler ended: the stream was closed.
        await v04.wait_for_watches(0)
        # The connection still works after the cancellation.
        assert (await session.get_task(held.id)).state is flame.TaskState.RUNNING
        await v04.release()
        await _all_done(conn, session)
        await _settle(conn, baseline)
    assert _threads() == threads


async def test_cancel_with_a_deadline_from_outside(v04: V04Server) -> None:
    async with await flame.connect(v04.endpoint) as conn:
        session = await _session(conn)
        baseline = await _loop_tasks(conn)
        with anyio.move_on_after(0.2) as scope:
            await session.run_task(b"hold", _Quiet())
        assert scope.cancelled_caught
        await v04.wait_for_watches(0)
        await v04.release()
        await _all_done(conn, session)
        await _settle(conn, baseline)


@pytest.mark.parametrize("leave", ["break", "exception"])
async def test_leaving_after_the_final_state_leaves_no_stream(v04: V04Server, leave: str) -> None:
    async with await flame.connect(v04.endpoint) as conn:
        session = await _session(conn)
        baseline = await _loop_tasks(conn)
        held = await session.create_task(b"hold")

        async def release() -> None:
            await v04.wait_for_watches(1)
            await v04.release()

        async with anyio.create_task_group() as group:
            group.start_soon(release)
            with pytest.raises(KeyError) if leave == "exception" else contextlib.nullcontext():
                async for update in session.watch_task(held.id):
                    assert update.state is flame.TaskState.SUCCEED
                    if leave == "break":
                        break
                    raise KeyError(update.id)
        await v04.wait_for_watches(0)
        await _settle(conn, baseline)


@pytest.mark.parametrize("leave", ["break", "exception"])
async def test_leaving_an_unfinished_watch_closes_its_stream(v04: V04Server, leave: str) -> None:
    async with await flame.connect(v04.endpoint) as conn:
        session = await _session(conn)
        baseline = await _loop_tasks(conn)
        task = await session.create_task(b"steps")  # pending, then running, then done

        async def release() -> None:
            await v04.wait_for_watches(1)
            await v04.release()

        async with anyio.create_task_group() as group:
            group.start_soon(release)
            with pytest.raises(KeyError) if leave == "exception" else contextlib.nullcontext():
                async for update in session.watch_task(task.id):
                    assert update.state is flame.TaskState.RUNNING
                    if leave == "break":
                        break
                    raise KeyError(update.id)
        # The task is still running, yet the server's handler has ended.
        await v04.wait_for_watches(0)
        assert (await session.get_task(task.id)).state is flame.TaskState.RUNNING
        await v04.release()
        await _all_done(conn, session)
        await _settle(conn, baseline)


@pytest.mark.parametrize("way", list(WAYS))
async def test_cancel_against_the_embedded_cluster(anyio_backend: str, way: str) -> None:
    threads = _threads()
    tasks = set(asyncio.all_tasks()) if anyio_backend == "asyncio" else set()
    async with LocalCluster(slots=1) as cluster, await flame.connect(cluster.endpoint) as conn:
        session = await _session(conn)
        sleeper = await session.create_task(b"sleep 30")
        with anyio.move_on_after(0.3) as scope:
            await WAYS[way](session, sleeper.id, b"sleep 30")
        assert scope.cancelled_caught
        # The connection goes on serving after the cancellation.
        assert (await session.get_task(sleeper.id)).state is flame.TaskState.RUNNING
    # Cluster and connection closed: no thread, and under asyncio no task, is left.
    assert _threads() == threads
    if anyio_backend == "asyncio":
        assert asyncio.all_tasks() == tasks
