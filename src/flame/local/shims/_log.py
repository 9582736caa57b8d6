"""The Log shim: logs the session and task ids; every task succeeds with no output."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from .._model import Application, Shim
from . import SHIMS, SessionContext, TaskContext

__all__ = ["open_log"]

log = logging.getLogger("flame.local.shims.log")


class _LogShim:
    __slots__ = ("session_id",)
    #: No process behind it: nothing can break.
    broken: str | None = None

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id

    async def invoke(self, task: TaskContext) -> bytes | None:
        # DEBUG: a busy cluster runs thousands of these a second.
        log.debug("session %s: task %s", task.session_id, task.task_id)
        return None


@contextlib.asynccontextmanager
async def open_log(app: Application, session: SessionContext) -> AsyncIterator[_LogShim]:
    log.debug("session %s: enter", session.session_id)
    try:
        yield _LogShim(session.session_id)
    finally:
        log.debug("session %s: leave", session.session_id)


SHIMS[Shim.LOG] = open_log
