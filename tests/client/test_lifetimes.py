"""A client's lifetime is its connection's: no thread, no task, nothing after close.

A whole session (connect, register, create a session, run 100 tasks, close)
is run against an embedded cluster started first, so that only the client
is counted. The client adds no thread at any point under either backend
(under trio, the cluster's own loop thread was there before connect).

The tests' trio runs in guest mode, which waits for I/O in a thread of
trio's cache: a short sleep before counting makes sure that thread is there
already, as it is for the rest of the test.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anyio
import sniffio

import flame
from flame.local import LocalCluster


def _tasks() -> int:
    """Every task of the running backend (under trio, system tasks included)."""
    if sniffio.current_async_library() == "asyncio":
        return len(asyncio.all_tasks())
    import trio

    count = 0
    pending: list[Any] = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


async def test_a_whole_session_starts_no_thread(anyio_backend: str) -> None:
    async with LocalCluster(slots=2) as cluster:
        await anyio.sleep(0.01)
        threads = threading.active_count()
        async with await flame.connect(cluster.endpoint) as conn:
            connected = threading.active_count()
            await conn.register_application("logged", {"shim": flame.Shim.LOG})
            attrs = flame.SessionAttributes(application="logged", slots=2)
            async with await conn.create_session(attrs) as session:
                tasks = await session.run_tasks([b"%d" % i for i in range(100)])
                ran = threading.active_count()
        closed = threading.active_count()
    assert [task.state for task in tasks] == [flame.TaskState.SUCCEED] * 100
    names = [thread.name for thread in threading.enumerate()]
    assert (connected, ran, closed) == (threads, threads, threads), names


async def test_a_closed_connection_leaves_no_task(anyio_backend: str) -> None:
    async with LocalCluster(slots=1) as cluster:
        before = _tasks()
        async with await flame.connect(cluster.endpoint) as conn:
            await conn.register_application("logged", {"shim": flame.Shim.LOG})
            attrs = flame.SessionAttributes(application="logged")
            async with await conn.create_session(attrs) as session:
                await session.run_task(b"one")
                async for _ in session.watch_task((await session.create_task(b"two")).id):
                    break  # a watcher dropped in the middle
        if anyio_backend == "trio":
            # The cluster runs on its own loop: nothing of the client is left.
            assert _tasks() == before
    if anyio_backend == "asyncio":
        # The cluster shared the loop; once it stopped, the loop is as it was.
        assert _tasks() <= before
