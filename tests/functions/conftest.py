"""Fixtures of the function-session tests: an embedded cluster and a connection to it.

The functions the tests send live in :mod:`._remote`. Functions of an
importable module travel by reference, and a service cannot import the tests'
modules, so that module is sent by value (as a user's own script is).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import cloudpickle
import pytest

import flame
from flame.local import LocalCluster

from . import _remote

cloudpickle.register_pickle_by_value(_remote)


@pytest.fixture
async def cluster(anyio_backend: str) -> AsyncIterator[LocalCluster]:
    async with LocalCluster(slots=2) as running:
        yield running


@pytest.fixture
async def conn(cluster: LocalCluster) -> AsyncIterator[flame.Connection]:
    async with await flame.Connection.connect(cluster.endpoint) as connection:
        yield connection
