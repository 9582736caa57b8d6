"""Fixtures of the client tests: an embedded cluster, a v0.4-faithful server, connections.

The fixtures ask for ``anyio_backend`` by name, and so must a parametrized
test that uses none of them: then pytest parametrizes it over both backends
together with its own parameters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from v04_server import V04Server, serve_v04

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
