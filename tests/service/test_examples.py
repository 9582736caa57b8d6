"""The examples and ``flame demo`` run as a user runs them, as processes."""

from __future__ import annotations

import math
import os
import pathlib
import re
import subprocess
import sys

import anyio
import pytest

import flame
from flame.functions import DEFAULT_APPLICATION
from flame.local import LocalCluster

EXAMPLES = pathlib.Path(__file__).parents[2] / "examples"
PI = re.compile(r"pi ~= (?P<value>\d+\.\d+)")


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=120, env=env
    )


def estimate(output: str) -> float:
    found = PI.search(output)
    assert found is not None, output
    return float(found.group("value"))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_echo_example(backend: str) -> None:
    done = run(str(EXAMPLES / "echo_client.py"), "--backend", backend, "one", "two")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["task 1: SUCCEED b'one'", "task 2: SUCCEED b'two'"]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_pi_example(backend: str) -> None:
    done = run(
        str(EXAMPLES / "pi_client.py"), "--backend", backend, "--tasks", "20", "--samples", "20000"
    )
    assert done.returncode == 0, done.stderr
    assert abs(estimate(done.stdout) - math.pi) < 0.05


def test_a_service_run_by_hand_says_how_it_is_started() -> None:
    executors = ("FLAME_SERVICE_MANAGER", "FLAME_INSTANCE_ENDPOINT", "FLAME_EXECUTOR_ID")
    env = {k: v for k, v in os.environ.items() if k not in executors}
    done = run(str(EXAMPLES / "echo_service.py"), env=env)
    assert done.returncode == 2
    assert "no Flame executor started this service" in done.stderr
    assert all(name in done.stderr for name in executors)
    assert "flame local" in done.stderr


def test_flame_demo_estimates_pi() -> None:
    done = run("-m", "flame._cli", "demo", "--tasks", "200", "--slots", "2")
    assert done.returncode == 0, done.stderr
    assert abs(estimate(done.stdout) - math.pi) < 0.01
    assert "200 tasks in " in done.stdout and "tasks/s" in done.stdout
    assert "wall time" in done.stdout


async def test_flame_demo_on_a_running_cluster() -> None:
    async with LocalCluster(slots=2) as cluster:
        outputs = []
        # The second run finds the application the first registered, and
        # runs its client under the other backend.
        for backend in ("asyncio", "trio"):
            argv = ["-m", "flame._cli", "demo", "--endpoint", cluster.endpoint]
            argv += ["--tasks", "10", "--samples", "1000", "--backend", backend]
            done = await anyio.run_process([sys.executable, *argv], check=False)
            assert done.returncode == 0, done.stderr.decode()
            outputs.append(done.stdout.decode())
        # The demo's tasks are calls of a plain function, run by the SDK's service.
        async with await flame.connect(cluster.endpoint) as conn:
            (application,) = await conn.list_applications()
            assert application.name == DEFAULT_APPLICATION
    assert all("10 tasks in " in output for output in outputs)
    # The same seeds give the same estimate, whoever runs them.
    assert estimate(outputs[0]) == estimate(outputs[1])


def test_flame_demo_refuses_slots_with_an_endpoint() -> None:
    done = run("-m", "flame._cli", "demo", "--endpoint", "http://127.0.0.1:1", "--slots", "2")
    assert done.returncode == 2
    assert "--slots applies to the embedded cluster" in done.stderr
