"""Shared test setup: every async test runs under asyncio and under trio.

anyio's plugin runs in auto mode (pyproject.toml), so every ``async def``
test takes this fixture at collection time, parametrized tests included,
and none can run on one backend only by forgetting a marker.
"""

from __future__ import annotations

import pytest


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
