"""10,000 calls keep the client's memory bounded: inputs are read lazily, values not kept.

The cluster runs in a process of its own (it keeps every task it ran, so in
this process it would hide the client's figure). The resident memory of this
process is sampled through a run of 1,000 calls and one of 10,000, and how
far each rose above where it started is compared: each input and value is
2 KiB, so keeping either for every call would add 20 MiB to the larger run,
and the bound allows 6 MiB. (tracemalloc would be exact, but it doubles the
client's time per call.)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

import flame
import flame.functions

pytestmark = pytest.mark.slow

PAYLOAD = 2048


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "flame._cli", "local"),
            *("--endpoint", f"http://127.0.0.1:{port}", "--slots", "2", "--log-level", "warning"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    said = process.stderr.read().decode() if process.stderr else ""
                    pytest.fail(f"flame local did not start: {said}")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _inputs(count: int) -> Iterator[bytes]:
    for index in range(count):
        yield index.to_bytes(4, "big") + os.urandom(PAYLOAD - 4)


async def _growth(f: flame.functions.FunctionSession[[bytes], bytes], count: int) -> int:
    """How far this process's resident memory rose while ``count`` calls ran."""
    process = psutil.Process()
    start = peak = process.memory_info().rss
    seen = 0
    async with f.as_completed(_inputs(count), concurrency=64) as results:
        async for index, value in results:
            assert len(value) == PAYLOAD and int.from_bytes(value[:4], "big") == index
            seen += 1
            if seen % 100 == 0:
                peak = max(peak, process.memory_info().rss)
    assert seen == count
    return max(peak, process.memory_info().rss) - start


async def test_ten_thousand_calls_in_bounded_memory(endpoint: str, anyio_backend: str) -> None:
    async with (
        await flame.connect(endpoint) as conn,
        await conn.function_session(lambda data: data, slots=1) as f,
    ):
        # Warm up: services started, buffers and caches grown.
        await _growth(f, 300)
        small = await _growth(f, 1_000)
        large = await _growth(f, 10_000)
    mib = 2**20
    print(f"resident memory rose {small / mib:.2f} MiB in 1,000 calls, {large / mib:.2f} in 10,000")
    assert large < small + 6 * 2**20, (small, large)
