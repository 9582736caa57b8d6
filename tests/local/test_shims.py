"""The Log, Stdio and Shell shims as a client sees them, and the executors around them."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import psutil

from flame._proto.v04 import flame as pb

from .conftest import Client, wait_until

PY = sys.executable


async def test_stdio_runs_the_command_with_arguments_environment_and_directory(
    client: Client, tmp_path: Path
) -> None:
    script = (
        "import os, sys; data = sys.stdin.buffer.read(); "
        "print(sys.argv[1:], os.getcwd(), os.environ['GREETING'], "
        "os.environ['FLAME_SESSION_ID'], os.environ['FLAME_TASK_ID'], data.decode())"
    )
    spec = pb.ApplicationSpec(
        shim=pb.Shim.Stdio,
        command=PY,
        arguments=["-c", script, "one", "two"],
        environments=["GREETING=hello=world"],
        working_directory=str(tmp_path),
    )
    assert (await client.register("py", spec)).return_code == 0
    session_id = await client.session("py")
    await client.session("py")
    done = await client.run(session_id, b"the input")
    assert done.status.state == pb.TaskState.Succeed, done.spec.output
    expected = f"['one', 'two'] {tmp_path} hello=world {session_id} 1 the input\n"
    assert done.spec.output.decode() == expected
    second = await client.run(session_id, b"")
    assert second.spec.output.decode().split()[-1] == "2"


async def test_shell_runs_the_input_as_a_command_line(client: Client, tmp_path: Path) -> None:
    spec = pb.ApplicationSpec(
        shim=pb.Shim.Shell,
        environments=["WHO=flame"],
        working_directory=str(tmp_path),
    )
    assert (await client.register("sh", spec)).return_code == 0
    session_id = await client.session("sh")
    done = await client.run(session_id, b'echo "$WHO $FLAME_SESSION_ID $FLAME_TASK_ID $(pwd)"')
    assert done.status.state == pb.TaskState.Succeed
    assert done.spec.output == f"flame {session_id} 1 {tmp_path}\n".encode()


async def test_shell_with_another_shell_and_its_arguments(client: Client) -> None:
    spec = pb.ApplicationSpec(shim=pb.Shim.Shell, command="/bin/bash", arguments=["--norc"])
    assert (await client.register("bash", spec)).return_code == 0
    session_id = await client.session("bash")
    done = await client.run(session_id, b"echo $BASH_VERSION | cut -c1")
    assert done.status.state == pb.TaskState.Succeed
    assert done.spec.output.strip().isdigit()


async def test_failures_fail_the_task_with_the_error_text(client: Client, tmp_path: Path) -> None:
    assert (await client.register("sh", pb.ApplicationSpec(shim=pb.Shim.Shell))).return_code == 0
    missing = pb.ApplicationSpec(shim=pb.Shim.Stdio, command=str(tmp_path / "no-such-program"))
    assert (await client.register("missing", missing)).return_code == 0
    nodir = pb.ApplicationSpec(shim=pb.Shim.Shell, working_directory=str(tmp_path / "gone"))
    assert (await client.register("nodir", nodir)).return_code == 0

    shell = await client.session("sh")
    failed = await client.run(shell, b"echo oops >&2; exit 7")
    assert failed.status.state == pb.TaskState.Failed
    assert failed.spec.output == b"command line 'echo oops >&2; exit 7' exited with code 7: oops"
    assert failed.status.completion_time is not None

    killed = await client.run(shell, b"kill -9 $$")
    assert killed.status.state == pb.TaskState.Failed
    assert b"killed by signal 9" in killed.spec.output

    not_text = await client.run(shell, b"\xff\xfe")
    assert not_text.status.state == pb.TaskState.Failed
    assert b"not UTF-8" in not_text.spec.output

    empty = await client.run(shell, b"")
    assert b"empty" in empty.spec.output

    program = await client.session("missing")
    absent = await client.run(program, b"x")
    assert absent.status.state == pb.TaskState.Failed
    assert b"cannot start command" in absent.spec.output
    assert b"no-such-program" in absent.spec.output

    where = await client.session("nodir")
    nowhere = await client.run(where, b"true")
    assert nowhere.status.state == pb.TaskState.Failed
    assert b"gone" in nowhere.spec.output

    # After failures the executors still work, and the counters add up.
    assert (await client.run(shell, b"echo fine")).spec.output == b"fine\n"
    assert await client.counters(shell) == (0, 0, 1, 4)
    assert await client.counters(program) == (0, 0, 0, 1)


async def test_a_failing_session_enter_fails_the_tasks_and_the_executor_carries_on(
    client: Client,
) -> None:
    from contextlib import asynccontextmanager

    from flame.local._model import Shim
    from flame.local.shims import SHIMS, ShimError

    @asynccontextmanager
    async def broken(app: Any, session: Any):  # type: ignore[no-untyped-def]
        raise ShimError(f"cannot enter session {session.session_id}")
        yield

    previous = SHIMS.get(Shim.GRPC)
    SHIMS[Shim.GRPC] = broken
    try:
        spec = pb.ApplicationSpec(shim=pb.Shim.Grpc, command="x")
        assert (await client.register("broken", spec)).return_code == 0
        session_id = await client.session("broken")
        ids = [await client.task(session_id, b"") for _ in range(3)]
        for task_id in ids:
            updates = await client.watch(session_id, task_id)
            assert updates[-1].status.state == pb.TaskState.Failed
            assert updates[-1].spec.output == f"cannot enter session {session_id}".encode()
        assert await client.counters(session_id) == (0, 0, 0, 3)
        # Other sessions are served as before.
        assert (await client.run(await client.session())).status.state == pb.TaskState.Succeed
    finally:
        if previous is None:
            del SHIMS[Shim.GRPC]
        else:
            SHIMS[Shim.GRPC] = previous


async def test_only_a_broken_shim_is_opened_again_and_only_so_many_times_in_a_row() -> None:
    from contextlib import asynccontextmanager

    from flame._transport import Channel
    from flame.local import LocalCluster
    from flame.local._executors import MAX_RESTARTS
    from flame.local._model import Shim
    from flame.local.shims import SHIMS, ShimError

    opened: list[str] = []

    class Fragile:
        """Fails on b"fail" and breaks on b"break"; answers which opening it is."""

        def __init__(self) -> None:
            self.number = len(opened)
            self.broken: str | None = None

        async def invoke(self, task: Any) -> bytes | None:
            if task.input == b"fail":
                raise ShimError("failed, still whole")
            if task.input == b"break":
                self.broken = f"opening {self.number} broke"
                raise ShimError(f"opening {self.number} broke on task {task.task_id}")
            return str(self.number).encode()

    @asynccontextmanager
    async def fragile(app: Any, session: Any):  # type: ignore[no-untyped-def]
        opened.append(session.session_id)
        yield Fragile()

    previous = SHIMS.get(Shim.GRPC)
    SHIMS[Shim.GRPC] = fragile
    try:
        # One slot: one executor takes the session's tasks, in order.
        async with (
            LocalCluster(slots=1) as cluster,
            await Channel.connect(cluster.endpoint) as channel,
        ):
            client = Client(channel)
            spec = pb.ApplicationSpec(shim=pb.Shim.Grpc, command="x")
            assert (await client.register("fragile", spec)).return_code == 0
            session_id = await client.session("fragile")

            async def run(data: bytes) -> tuple[bool, bytes]:
                task = await client.run(session_id, data)
                return task.status.state == pb.TaskState.Succeed, task.spec.output or b""

            assert await run(b"ok") == (True, b"1")
            assert await run(b"fail") == (False, b"failed, still whole")
            assert await run(b"ok") == (True, b"1")
            assert await run(b"break") == (False, b"opening 1 broke on task 4")
            assert await run(b"ok") == (True, b"2")
            # MAX_RESTARTS breaks in a row: the executor stops opening the shim.
            for _ in range(MAX_RESTARTS):
                assert (await run(b"break"))[0] is False
            given_up = await run(b"ok")
            assert given_up[0] is False
            assert f"crashed {MAX_RESTARTS} times in a row".encode() in given_up[1]
            assert f"opening {1 + MAX_RESTARTS} broke".encode() in given_up[1]
            assert len(opened) == 1 + MAX_RESTARTS
            # Another session has executors of its own, which start afresh.
            other = await client.session("fragile")
            assert (await client.run(other, b"ok")).status.state == pb.TaskState.Succeed
            assert opened[-1] == other
    finally:
        if previous is None:
            del SHIMS[Shim.GRPC]
        else:
            SHIMS[Shim.GRPC] = previous


async def test_stopping_the_cluster_kills_running_children(tmp_path: Path) -> None:
    from flame._transport import Channel
    from flame.local import LocalCluster

    marker = tmp_path / "pid"
    async with LocalCluster(slots=1) as cluster, await Channel.connect(cluster.endpoint) as channel:
        client = Client(channel)
        assert (
            await client.register("sh", pb.ApplicationSpec(shim=pb.Shim.Shell))
        ).return_code == 0
        session_id = await client.session("sh")
        # The child starts a grandchild in the background, then waits.
        await client.task(session_id, f"sleep 60 & echo $! > {marker}; wait".encode())
        await wait_until(lambda: marker.exists() and marker.read_text().strip() != "")
        grandchild = int(marker.read_text())
        assert psutil.pid_exists(grandchild)
    # SIGKILL reaches the grandchild a moment later; a zombie counts as gone.
    await wait_until(lambda: not _alive(grandchild))
    me = psutil.Process(os.getpid())
    assert [c for c in me.children(recursive=True) if _alive(c.pid)] == []


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_sessions_share_the_executors_in_proportion() -> None:
    from flame._transport import Channel
    from flame.local import LocalCluster

    async with LocalCluster(slots=2) as cluster, await Channel.connect(cluster.endpoint) as channel:
        client = Client(channel)
        assert (
            await client.register("sh", pb.ApplicationSpec(shim=pb.Shim.Shell))
        ).return_code == 0
        big = await client.session("sh")
        for _ in range(8):
            await client.task(big, b"sleep 0.2")
        # Both slots are taken by the big session...

        async def both_running() -> bool:
            return (await client.counters(big))[1] == 2

        await wait_until(both_running)
        small = await client.session("sh")
        # ...and still a late small session runs before the big one is done.
        done = await client.run(small, b"echo small")
        assert done.spec.output == b"small\n"
        pending, running, succeed, _ = await client.counters(big)
        assert pending + running > 0 and succeed < 8
        # The big session then gets both slots back and finishes.
        last = str(8)
        await client.watch(big, last)
        assert await client.counters(big) == (0, 0, 8, 0)


async def test_an_updated_application_applies_to_new_sessions_only(client: Client) -> None:
    old = pb.ApplicationSpec(shim=pb.Shim.Shell, environments=["VERSION=1"])
    assert (await client.register("sh", old)).return_code == 0
    before = await client.session("sh")
    new = pb.ApplicationSpec(shim=pb.Shim.Shell, environments=["VERSION=2"])
    result = await client.call(
        "update_application", pb.UpdateApplicationRequest(name="sh", application=new)
    )
    assert result.return_code == 0
    after = await client.session("sh")
    assert (await client.run(before, b"echo $VERSION")).spec.output == b"1\n"
    assert (await client.run(after, b"echo $VERSION")).spec.output == b"2\n"


async def test_output_above_the_message_limit_fails_the_task(client: Client) -> None:
    from flame.local._limits import MAX_OUTPUT_BYTES

    assert (await client.register("sh", pb.ApplicationSpec(shim=pb.Shim.Shell))).return_code == 0
    session_id = await client.session("sh")
    line = f"head -c {MAX_OUTPUT_BYTES + 1} /dev/zero".encode()
    done = await client.run(session_id, line)
    assert done.status.state == pb.TaskState.Failed
    assert b"wrote more than" in done.spec.output
    exact = await client.run(session_id, f"head -c {MAX_OUTPUT_BYTES} /dev/zero".encode())
    assert exact.status.state == pb.TaskState.Succeed
    assert len(exact.spec.output) == MAX_OUTPUT_BYTES
