"""Closing leaves nothing behind: threads, sockets, file descriptors, tasks.

Each test takes a census, runs a whole cycle (serve, connect, call, stream,
cancel both, leave a flooding stream, close), checks that the cycle did hold
something (so the census can see a leak), and waits, boundedly, for the census
to return to where it started.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path

import anyio
import psutil
import pytest
import sniffio
import trustme
from transport_helpers import BOUND, Frontend, wait_until

from flame._proto.v04 import flame as pb
from flame._transport import Channel, open_grpc_loop, serve

GET_TASK = "/flame.Frontend/GetTask"
WATCH_TASK = "/flame.Frontend/WatchTask"


def _tcp_count(process: psutil.Process) -> int:
    return len(process.net_connections(kind="tcp"))


def _trio_tasks() -> int:
    """Every task of the running trio, system tasks included."""
    import trio

    count = 0
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


def census() -> dict[str, object]:
    process = psutil.Process()
    counted: dict[str, object] = {
        # Trio's thread cache comes and goes on its own (anyio's test runner
        # runs trio in guest mode, which waits for I/O in such a thread);
        # flame never hands work to it, and every other thread is counted.
        "threads": sorted(
            f"{thread.name}:{thread.ident}"
            for thread in threading.enumerate()
            if not thread.name.startswith("Trio thread")
        ),
        "fds": process.num_fds(),
        "tcp": _tcp_count(process),
    }
    if sniffio.current_async_library() == "asyncio":
        counted["asyncio tasks"] = len(asyncio.all_tasks())
    else:
        counted["trio tasks"] = _trio_tasks()
    return counted


async def _cycle(
    frontend: Frontend, server_ssl: ssl.SSLContext | None, ca_file: str | None
) -> dict[str, object]:
    """One of everything; returns the census taken while it was all open."""
    loop = open_grpc_loop()
    try:
        async with (
            serve(loop, [frontend], ssl=server_ssl) as server,
            await Channel.connect(server.address, ca_file=ca_file) as channel,
        ):
            stub = pb.FrontendStub(channel)
            assert (
                await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="1"))
            ).metadata.id == "1"
            async with channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="2")) as updates:
                assert len([u async for u in updates]) == 3
            # The same calls with an encoded request and a decoder.
            request = pb.GetTaskRequest(task_id="3")
            assert (await channel.call(GET_TASK, bytes(request), pb.Task.parse)).metadata.id == "3"
            async with channel.open_stream(WATCH_TASK, bytes(request), pb.Task.parse) as updates:
                assert len([u async for u in updates]) == 3
            with anyio.move_on_after(30) as scope:
                async with anyio.create_task_group() as tg:

                    async def cancel_when_held() -> None:
                        await wait_until(lambda: len(frontend.calls) == 5, "the held call")
                        scope.cancel()

                    tg.start_soon(cancel_when_held)
                    await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="hold"))
            assert scope.cancelled_caught
            with anyio.CancelScope() as scope:
                async with channel.stream(
                    stub.watch_task, pb.WatchTaskRequest(task_id="hold")
                ) as updates:
                    async for _ in updates:
                        scope.cancel()
            async with channel.stream(
                stub.watch_task, pb.WatchTaskRequest(task_id="flood")
            ) as updates:
                async for update in updates:
                    if update.metadata.id == "30":
                        break
            during = census()
            # A call still held when the channel closes.
            async with anyio.create_task_group() as tg:

                async def held() -> None:
                    with pytest.raises(Exception):  # noqa: B017 - closing fails it, as tested elsewhere
                        await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="hold"))

                tg.start_soon(held)
                await wait_until(lambda: len(frontend.calls) == 8, "the last held call")
                await channel.aclose()
    finally:
        await loop.aclose()
    for seen in frontend.calls:
        assert seen.ended.is_set()
    return during


def _leaks(before: dict[str, object]) -> dict[str, object]:
    """What the census holds now beyond ``before``.

    Only growth counts: something else in the process (another test's
    thread winding down) may let go of things meanwhile.
    """
    now = census()
    leaks: dict[str, object] = {}
    extra = set(now["threads"]) - set(before["threads"])  # type: ignore[call-overload]
    if extra:
        leaks["threads"] = sorted(extra)
    for key in ("fds", "tcp", "asyncio tasks", "trio tasks"):
        if key in now and now[key] > before[key]:  # type: ignore[operator]
            leaks[key] = (before[key], now[key])
    return leaks


async def _settles_to(before: dict[str, object]) -> None:
    # The kernel and the loops may take a moment to let go; the bound only
    # keeps a leak from hanging the test, and the assertion shows the leak.
    with anyio.move_on_after(BOUND):
        while _leaks(before):  # noqa: ASYNC110 - nothing to wait on but the kernel
            await anyio.sleep(0.01)
    assert _leaks(before) == {}


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_a_full_cycle_leaves_nothing_behind(
    anyio_backend: str, tls: bool, authority: trustme.CA, tmp_path: Path
) -> None:
    server_ssl = ca_file = None
    if tls:
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(server_ssl)
        ca_file = str(tmp_path / "ca.pem")
        authority.cert_pem.write_to_path(ca_file)

    before = census()
    during = await _cycle(Frontend(), server_ssl, ca_file)

    # The census sees what the cycle holds: a listening socket and both ends
    # of a connection, and under trio the server's loop thread (the client
    # has none).
    assert isinstance(during["tcp"], int) and isinstance(before["tcp"], int)
    assert during["tcp"] >= before["tcp"] + 3
    if anyio_backend == "trio":
        assert len(during["threads"]) == len(before["threads"]) + 1  # type: ignore[arg-type]

    await _settles_to(before)
    assert not [t for t in threading.enumerate() if t.name == "flame-grpc-loop"]


async def test_a_client_alone_adds_no_thread_and_no_task(anyio_backend: str) -> None:
    # The server runs first, so that only the client is counted.
    loop = open_grpc_loop()
    frontend = Frontend()
    try:
        async with serve(loop, [frontend]) as server:
            before = census()
            async with await Channel.connect(server.address) as channel:
                stub = pb.FrontendStub(channel)
                await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="1"))
                async with channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="2")) as it:
                    assert len([u async for u in it]) == 3
                during = census()
            after = census()
    finally:
        await loop.aclose()
    tasks = "asyncio tasks" if anyio_backend == "asyncio" else "trio tasks"
    # Between calls a connection is a socket: no thread, no task of its own.
    assert during["threads"] == before["threads"]
    assert during[tasks] == before[tasks]
    assert during["tcp"] == before["tcp"] + 2  # type: ignore[operator]
    assert after["threads"] == before["threads"] and after[tasks] == before[tasks]


async def test_many_cycles_do_not_accumulate(anyio_backend: str) -> None:
    before = census()
    for _ in range(5):
        await _cycle(Frontend(), None, None)
    await _settles_to(before)
