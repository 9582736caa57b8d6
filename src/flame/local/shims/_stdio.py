"""The Stdio shim: one run of the application's command per task.

The task input goes to the command's stdin, which is then closed; everything
it writes to stdout is the task output. A non-zero exit fails the task with
the exit status and the end of its stderr.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..._proto.v04 import flame as pb
from . import SHIMS
from ._process import child_environment, run_child

__all__ = ["open_stdio"]


class _StdioShim:
    __slots__ = ("argv", "spec")
    #: A process per task: nothing outlives a task to break.
    broken: str | None = None

    def __init__(self, spec: pb.ApplicationSpec) -> None:
        self.spec = spec
        self.argv = [spec.command or "", *spec.arguments]

    async def invoke(self, task: pb.TaskContext) -> bytes | None:
        env = child_environment(self.spec, task.session_id, task.task_id)
        return await run_child(
            self.argv,
            data=task.input or b"",
            env=env,
            cwd=self.spec.working_directory,
            what=f"command {self.spec.command!r}",
        )


@contextlib.asynccontextmanager
async def open_stdio(app: pb.Application, session: pb.SessionContext) -> AsyncIterator[_StdioShim]:
    assert app.spec is not None
    yield _StdioShim(app.spec)


SHIMS[pb.Shim.Stdio] = open_stdio
