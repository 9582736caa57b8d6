"""The Shell shim: the task input is a command line; its stdout is the task output.

The line runs under ``/bin/sh -c``, or under the application's ``command``
(with its ``arguments`` before ``-c``) when it names another shell, in the
application's working directory and environment. Nothing goes to stdin.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from .._model import Application, Shim
from . import SHIMS, SessionContext, ShimError, TaskContext
from ._process import child_environment, run_child

__all__ = ["open_shell"]


class _ShellShim:
    __slots__ = ("app", "shell")
    #: A process per task: nothing outlives a task to break.
    broken: str | None = None

    def __init__(self, app: Application) -> None:
        self.app = app
        self.shell = [app.command or "/bin/sh", *app.arguments]

    async def invoke(self, task: TaskContext) -> bytes | None:
        raw = task.input or b""
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ShimError("the task input is not UTF-8 text, so it is no command line") from None
        if not line.strip():
            raise ShimError("the task input is empty; give the command line to run")
        env = child_environment(self.app, task.session_id, task.task_id)
        return await run_child(
            [*self.shell, "-c", line],
            data=b"",
            env=env,
            cwd=self.app.working_directory,
            what=f"command line {line[:200]!r}",
        )


@contextlib.asynccontextmanager
async def open_shell(app: Application, session: SessionContext) -> AsyncIterator[_ShellShim]:
    yield _ShellShim(app)


SHIMS[Shim.SHELL] = open_shell
