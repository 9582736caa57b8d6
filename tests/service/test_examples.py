"""The examples and ``flame demo`` run as a user runs them, as processes."""

from __future__ import annotations

import math
import os
import pathlib
import re
import select
import subprocess
import sys
import time

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
    # stderr is a pipe here, not a terminal: no progress is drawn on it.
    assert "estimating pi" not in done.stderr


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal (POSIX)")
def test_flame_demo_draws_its_progress_on_a_terminal() -> None:
    env = {**os.environ, "TERM": "xterm-256color"}
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        env.pop(name, None)
    controller, terminal = os.openpty()
    argv = ["-m", "flame._cli", "demo", "--tasks", "40", "--samples", "1000", "--slots", "2"]
    with subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=terminal, env=env
    ) as demo:
        os.close(terminal)
        drawn = _read_terminal(controller)
        stdout = demo.stdout.read().decode() if demo.stdout is not None else ""
        assert demo.wait(timeout=120) == 0, drawn
    os.close(controller)
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)
    last = [line for line in re.split(r"[\r\n]", screen) if "estimating pi" in line][-1]
    assert "40/40" in last and "0 failed" in last, last
    assert abs(estimate(stdout) - math.pi) < 0.1


def _read_terminal(controller: int) -> str:
    """What a process wrote on the terminal, until every process holding it has let it go."""
    drawn = b""
    deadline = time.monotonic() + 120  # a hang guard only
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal's last holder has closed it
            break
        if not chunk:
            break
        drawn += chunk
    return drawn.decode("utf-8", "replace")


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
