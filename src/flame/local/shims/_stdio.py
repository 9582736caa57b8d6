"""The Stdio shim: one run of the application's command per task.

The task input goes to the command's stdin, which is then closed; everything
it writes to stdout is the task output. A non-zero exit fails the task with
the exit status and the end of its stderr.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from .._model import Application, Shim
from . import SHIMS, SessionContext, TaskContext
from ._process import child_environment, run_child

__all__ = ["open_stdio"]


class _StdioShim:
    __slots__ = ("app", "argv")
    #: A process per task: nothing outlives a task to break.
    broken: str | None = None

    def __init__(self, app: Application) -> None:
        self.app = app
        self.argv = [app.command or "", *app.arguments]

    async def invoke(self, task: TaskContext) -> bytes | None:
        env = child_environment(self.app, task.session_id, task.task_id)
        return await run_child(
            self.argv,
            data=task.input or b"",
            env=env,
            cwd=self.app.working_directory,
            what=f"command {self.app.command!r}",
        )


@contextlib.asynccontextmanager
async def open_stdio(app: Application, session: SessionContext) -> AsyncIterator[_StdioShim]:
    yield _StdioShim(app)


SHIMS[Shim.STDIO] = open_stdio
