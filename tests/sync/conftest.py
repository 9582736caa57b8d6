"""Fixtures of the blocking API's tests: servers on threads of their own.

The blocking API is called from the test's own thread, so the cluster it
talks to runs on another: an anyio blocking portal (asyncio) each, made
here. ``backend`` is the event loop of the connection under test, asyncio
and trio: each test that takes it runs under both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import anyio.from_thread
import pytest
from v04_server import V04Server, serve_v04

import flame.sync
from flame.local import LocalCluster

# How long a test waits for something that must happen (a hang guard only).
PATIENCE = 20.0


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(LocalCluster(slots=2)) as running,
    ):
        yield running


class ThreadedV04:
    """A :class:`V04Server` on a thread of its own, with blocking helpers."""

    def __init__(self, server: V04Server, portal: anyio.from_thread.BlockingPortal) -> None:
        self.server = server
        self.portal = portal
        self.endpoint = server.endpoint

    def release(self) -> None:
        """Let every held task finish."""
        self.portal.call(self.server.release)

    def active_watches(self) -> int:
        return int(self.portal.call(self.server.active_watches))

    def wait_for_watches(self, count: int) -> None:
        """Wait until exactly ``count`` WatchTask handlers run."""
        self.portal.call(self.server.wait_for_watches, count)

    def calls(self) -> list[str]:
        return list(self.portal.call(self.server.on_loop, lambda: list(self.server.frontend.calls)))


@pytest.fixture
def v04() -> Iterator[ThreadedV04]:
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve_v04()) as server,
    ):
        yield ThreadedV04(server, portal)


@pytest.fixture
def conn(cluster: LocalCluster, backend: str) -> Iterator[flame.sync.Connection]:
    with flame.sync.connect(cluster.endpoint, backend=backend) as connection:
        yield connection


@pytest.fixture
def v04_conn(v04: ThreadedV04, backend: str) -> Iterator[flame.sync.Connection]:
    with flame.sync.connect(v04.endpoint, backend=backend) as connection:
        yield connection


def wait_until(condition: object, what: str) -> None:
    """Poll ``condition()`` until true; fail after PATIENCE seconds (a hang guard)."""
    deadline = time.monotonic() + PATIENCE
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def thread_count() -> int:
    return threading.active_count()
