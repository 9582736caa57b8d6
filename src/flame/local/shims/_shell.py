"""The Shell shim: the task input is a command line; its stdout is the task output.

The line runs under ``/bin/sh -c``, or under the application's ``command``
(with its ``arguments`` before ``-c``) when it names another shell, in the
application's working directory and environment. Nothing goes to stdin.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..._proto.v04 import flame as pb
from . import SHIMS, ShimError
from ._process import child_environment, run_child

__all__ = ["open_shell"]


class _ShellShim:
    __slots__ = ("shell", "spec")
    #: A process per task: nothing outlives a task to break.
    broken: str | None = None

    def __init__(self, spec: pb.ApplicationSpec) -> None:
        self.spec = spec
        self.shell = [spec.command or "/bin/sh", *spec.arguments]

    async def invoke(self, task: pb.TaskContext) -> bytes | None:
        raw = task.input or b""
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ShimError("the task input is not UTF-8 text, so it is no command line") from None
        if not line.strip():
            raise ShimError("the task input is empty; give the command line to run")
        env = child_environment(self.spec, task.session_id, task.task_id)
        return await run_child(
            [*self.shell, "-c", line],
            data=b"",
            env=env,
            cwd=self.spec.working_directory,
            what=f"command line {line[:200]!r}",
        )


@contextlib.asynccontextmanager
async def open_shell(app: pb.Application, session: pb.SessionContext) -> AsyncIterator[_ShellShim]:
    assert app.spec is not None
    yield _ShellShim(app.spec)


SHIMS[pb.Shim.Shell] = open_shell
