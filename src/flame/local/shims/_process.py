"""Running one child process for a task: the common part of the Stdio and Shell shims.

Each child starts in a session (and so a process group) of its own, so that
stopping it stops whatever it started too: when the task ends, fails or is
cancelled, the whole group is killed and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping, Sequence

import anyio
import anyio.abc

from .._limits import MAX_OUTPUT_BYTES
from .._model import Application
from . import ShimError

__all__ = ["child_environment", "run_child"]

#: How much of a failing child's stderr goes into the error text.
STDERR_TAIL = 2000


def child_environment(app: Application, session_id: str, task_id: str) -> dict[str, str]:
    """This process's environment, the application's ``environments``, and the Flame ids."""
    env = dict(os.environ)
    env.update(app.environments)
    env["FLAME_SESSION_ID"] = session_id
    env["FLAME_TASK_ID"] = task_id
    return env


def _kill_group(process: anyio.abc.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class _Collected:
    """What a child wrote to one pipe, up to a limit."""

    __slots__ = ("chunks", "limit", "overflow", "size")

    def __init__(self, limit: int) -> None:
        self.chunks: list[bytes] = []
        self.limit = limit
        self.size = 0
        self.overflow = False

    def data(self) -> bytes:
        return b"".join(self.chunks)


async def _read_all(stream: anyio.abc.ByteReceiveStream | None, into: _Collected) -> None:
    if stream is None:
        return
    async for chunk in stream:
        into.size += len(chunk)
        if into.size <= into.limit:
            into.chunks.append(chunk)
        else:
            # Keep reading, so that the child is not blocked on a full pipe.
            into.overflow = True


async def _feed(stream: anyio.abc.ByteSendStream | None, data: bytes) -> None:
    if stream is None:
        return
    try:
        if data:
            await stream.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, BrokenPipeError):
        pass  # the child did not read all of its input; its exit code tells the rest
    finally:
        with contextlib.suppress(Exception):
            await stream.aclose()


async def run_child(
    argv: Sequence[str],
    *,
    data: bytes,
    env: Mapping[str, str],
    cwd: str | None,
    what: str,
) -> bytes:
    """Run ``argv`` with ``data`` on stdin; its stdout, or ShimError saying why it failed."""
    try:
        # Shielded: cancelled half-way, asyncio would leave the child running
        # with nobody to stop it. A cancellation is seen at the next await.
        with anyio.CancelScope(shield=True):
            process = await anyio.open_process(
                list(argv), cwd=cwd or None, env=env, start_new_session=True
            )
    except OSError as exc:
        where = f" in {cwd!r}" if cwd else ""
        raise ShimError(f"cannot start {what}{where}: {exc.strerror or exc}") from None
    out = _Collected(MAX_OUTPUT_BYTES)
    err = _Collected(64 * 1024)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_feed, process.stdin, data)
            tg.start_soon(_read_all, process.stdout, out)
            tg.start_soon(_read_all, process.stderr, err)
            code = await process.wait()
            # Whatever the child left running would keep the pipes open.
            _kill_group(process)
    finally:
        if process.returncode is None:
            _kill_group(process)
            with anyio.CancelScope(shield=True):
                await process.wait()
        else:
            _kill_group(process)
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await process.aclose()
    if code != 0:
        tail = err.data().decode("utf-8", "replace").strip()[-STDERR_TAIL:]
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise ShimError(f"{what} {how}" + (f": {tail}" if tail else " (no stderr)"))
    if out.overflow:
        raise ShimError(
            f"{what} wrote more than {MAX_OUTPUT_BYTES} bytes to stdout, above the largest "
            "task output this cluster sends"
        )
    return out.data()
