"""The backend matrix itself: each name of ``--backends`` runs the loop it says."""

from __future__ import annotations

import asyncio

import sniffio


async def test_each_backend_runs_its_own_event_loop(request, anyio_backend: str) -> None:
    name = request.node.callspec.id
    library = sniffio.current_async_library()
    if name == "trio":
        assert library == "trio"
        return
    assert library == "asyncio"
    loop_module = type(asyncio.get_running_loop()).__module__
    if name == "uvloop":
        assert loop_module.startswith("uvloop"), loop_module
    else:
        assert loop_module.startswith("asyncio"), loop_module
