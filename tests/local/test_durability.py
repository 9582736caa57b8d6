"""With sqlite storage, what the cluster acknowledged survives ``kill -9``.

Real ``flame local`` processes: one killed under load and started again on
its file, two started on one file, and the files' modes.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc
import pytest

from flame._errors import FlameError
from flame._proto.v04 import flame as pb
from flame._transport import Channel
from flame.local import ApplicationConfig, ClusterConfig, LocalCluster

from .conftest import Client
from .test_command import _first_line, _flame_local, _free_port


def _config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "flame-conf.yaml"
    config.write_text(
        f"endpoint: http://127.0.0.1:{port}\n"
        f"storage: sqlite://{tmp_path / 'flame.db'}\n"
        "applications: [{name: ping, shim: Log}]\n"
    )
    return config


async def _stop(process: anyio.abc.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.aclose()


async def test_acknowledged_tasks_survive_kill_9_and_their_ids_are_never_reused(
    tmp_path: Path,
) -> None:
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [*_flame_local(), "--config", str(_config(tmp_path, port)), "--slots", "2"]
    created: dict[str, bytes] = {}  # acknowledged creations: id -> input
    succeeded: dict[str, bytes] = {}  # tasks seen Succeed: id -> output
    enough = anyio.Event()

    async def load(client: Client, session_id: str, worker: int) -> None:
        n = 0
        while True:
            data = b"%d-%d" % (worker, n)
            n += 1
            task_id = await client.task(session_id, data)
            created[task_id] = data
            last = (await client.watch(session_id, task_id))[-1]
            if last.status.state == pb.TaskState.Succeed:
                succeeded[task_id] = last.spec.output
            if len(created) >= 300:
                enough.set()

    process = await anyio.open_process(command, stderr=subprocess.DEVNULL)
    try:
        await _first_line(process)
        async with await Channel.connect(endpoint) as channel:
            client = Client(channel)
            session_id = await client.session("ping")
            async with anyio.create_task_group() as tg:
                for worker in range(8):
                    tg.start_soon(_until_refused, load, client, session_id, worker)
                with anyio.fail_after(60):
                    await enough.wait()
                # Killed in the middle of the load: creations and finishes in flight.
                process.kill()
                await process.wait()
    finally:
        await _stop(process)
    assert len(created) >= 300 and succeeded

    process = await anyio.open_process(command, stderr=subprocess.DEVNULL)
    try:
        await _first_line(process)
        async with await Channel.connect(endpoint) as channel:
            client = Client(channel)
            for task_id, data in created.items():
                task = await client.call(
                    "get_task", pb.GetTaskRequest(task_id=task_id, session_id=session_id)
                )
                assert task.spec.input == data, (task_id, task)
                if task_id in succeeded:
                    assert task.status.state == pb.TaskState.Succeed, (task_id, task)
                    assert task.spec.output == succeeded[task_id]
            # A new task gets an id none of the old ones had.
            new_id = await client.task(session_id, b"new")
            assert int(new_id) > max(int(task_id) for task_id in created)
    finally:
        await _stop(process)


async def _until_refused(load: Callable[..., Awaitable[None]], *args: object) -> None:
    # The load ends when the cluster is killed under it.
    with contextlib.suppress(FlameError):
        await load(*args)


async def test_a_second_cluster_on_the_same_file_is_refused(tmp_path: Path) -> None:
    first_port, second_port = _free_port(), _free_port()
    first = await anyio.open_process(
        [*_flame_local(), "--config", str(_config(tmp_path, first_port)), "--slots", "1"],
        stderr=subprocess.DEVNULL,
    )
    try:
        await _first_line(first)
        config = tmp_path / "second.yaml"
        config.write_text(
            _config(tmp_path, first_port).read_text().replace(str(first_port), str(second_port))
        )
        with anyio.fail_after(60):
            second = await anyio.run_process(
                [*_flame_local(), "--config", str(config), "--slots", "1"], check=False
            )
        assert second.returncode != 0
        message = second.stderr.decode()
        assert "in use by another cluster" in message, message
        assert f"process {first.pid}" in message, message
        # The first one serves on, untouched.
        async with await Channel.connect(f"http://127.0.0.1:{first_port}") as channel:
            client = Client(channel)
            session_id = await client.session("ping")
            assert (await client.run(session_id, b"x")).status.state == pb.TaskState.Succeed
    finally:
        await _stop(first)
    # Once the first is gone (even killed), the file can be used again.
    async with LocalCluster(
        ClusterConfig(slots=1, storage=f"sqlite://{tmp_path / 'flame.db'}")
    ) as cluster:
        assert cluster.endpoint


async def test_the_files_are_readable_by_their_owner_alone(tmp_path: Path) -> None:
    database = tmp_path / "flame.db"
    old = os.umask(0o022)
    try:
        config = ClusterConfig(
            slots=1, storage=f"sqlite://{database}", applications=[ApplicationConfig("ping")]
        )
        async with (
            LocalCluster(config) as cluster,
            await Channel.connect(cluster.endpoint) as channel,
        ):
            client = Client(channel)
            session_id = await client.session("ping")
            await client.run(session_id, b"secret")
            files = [database, *(Path(f"{database}{end}") for end in ("-wal", "-shm", ".lock"))]
            for path in files:
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            assert cluster.storage_problem is None  # every commit went through
    finally:
        os.umask(old)
    with pytest.raises(FlameError, match="not running"):
        _ = cluster.storage_problem
