"""Fixtures of the client tests: an embedded cluster, servers faithful to each wire, connections.

The fixtures ask for ``anyio_backend`` by name, and so must a parametrized
test that uses none of them: then pytest parametrizes it over both backends
together with its own parameters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from v04_server import V04Server, serve_v04
from v06_server import WireServer, serve_v05, serve_v06

import flame
from flame.local import LocalCluster


@pytest.fixture
async def cluster(anyio_backend: str) -> AsyncIterator[LocalCluster]:
    async with LocalCluster(slots=2) as running:
        yield running


@pytest.fixture
async def conn(cluster: LocalCluster) -> AsyncIterator[flame.Connection]:
    async with await flame.Connection.connect(cluster.endpoint) as connection:
        yield connection


@pytest.fixture
async def v04(anyio_backend: str) -> AsyncIterator[V04Server]:
    async with serve_v04() as server:
        yield server


@pytest.fixture
async def v04_conn(v04: V04Server) -> AsyncIterator[flame.Connection]:
    async with await flame.Connection.connect(v04.endpoint) as connection:
        yield connection


@pytest.fixture
async def v05(anyio_backend: str) -> AsyncIterator[WireServer]:
    async with serve_v05() as server:
        yield server


@pytest.fixture
async def v06(anyio_backend: str) -> AsyncIterator[WireServer]:
    async with serve_v06() as server:
        yield server


@pytest.fixture
async def v05_conn(v05: WireServer) -> AsyncIterator[flame.Connection]:
    async with await flame.Connection.connect(v05.endpoint) as connection:
        yield connection


@pytest.fixture
async def v06_conn(v06: WireServer) -> AsyncIterator[flame.Connection]:
    async with await flame.Connection.connect(v06.endpoint) as connection:
        yield connection


@pytest.fixture(params=["v0.4", "v0.5", "v0.6"])
async def wire_conn(
    request: pytest.FixtureRequest, anyio_backend: str
) -> AsyncIterator[flame.Connection]:
    """A connection to the test server of each wire in turn, the wire found by the probe."""
    serving = (
        serve_v04()
        if request.param == "v0.4"
        else serve_v06()
        if request.param == "v0.6"
        else serve_v05()
    )
    async with serving as server, await flame.Connection.connect(server.endpoint) as connection:
        assert connection.wire == request.param
        yield connection
