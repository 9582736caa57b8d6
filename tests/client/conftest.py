"""Fixtures of the client tests: a v0.4-faithful server and a connection to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from v04_server import V04Server, serve_v04

import flame


@pytest.fixture
async def v04() -> AsyncIterator[V04Server]:
    async with serve_v04() as server:
        yield server


@pytest.fixture
async def v04_conn(v04: V04Server) -> AsyncIterator[flame.Connection]:
    async with await flame.Connection.connect(v04.endpoint) as conn:
        yield conn
