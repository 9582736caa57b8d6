"""How an executor runs an application's code: one shim per ``Shim`` kind.

A shim is opened once when an executor is bound to a session (session-enter),
invoked once per task, one task after another, and closed when the executor
is released (session-leave)::

    async with open_shim(app, session) as shim:
        output = await shim.invoke(task)      # bytes, or None for no output

``invoke`` raises :class:`ShimError` (or any exception) when the task fails;
the executor marks the task Failed with the error's text (which a v0.4
frontend shows as the task's output) and the output the error carries, if
any. How a failure to enter is reported depends on the contract: v0.4's
executor fails the task it had in hand with the text; v0.6's records a bind
failure on the session (see the executor pool).

The shims know no wire: they get the cluster's records (:mod:`.._model`)
and the neutral :class:`SessionContext` and :class:`TaskContext`; a shim
that speaks to a service (Grpc, Host) writes its own contract's messages.

``broken`` says whether the shim can run another task: a shim that keeps a
process for the session (Grpc) is broken once that process is gone, and the
executor then closes it and opens a new one for its next task. Shims that
start a process per task are never broken.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NamedTuple, Protocol

import attrs

from .._model import Application, Shim

__all__ = [
    "ENTER_FAILED",
    "SHIMS",
    "SHIM_FAILED",
    "BindError",
    "SessionContext",
    "ShimError",
    "ShimOpener",
    "ShimSession",
    "TaskContext",
    "open_shim",
    "supported",
]


class ShimError(Exception):
    """A task or session failed inside a shim.

    ``message`` says why (None: the service said nothing); ``output`` is
    what the service gave as the failed task's output, if anything.
    """

    def __init__(self, message: str | None, output: bytes | None = None) -> None:
        super().__init__(message or "")
        self.message = message
        self.output = output


class BindError(ShimError):
    """The shim could not be bound to its session; ``bind_code`` says which step failed.

    The codes are v0.6's: :data:`SHIM_FAILED` (the service could not be
    started, or never became ready), :data:`ENTER_FAILED` (it refused the
    session, or failed while entering it).
    """

    def __init__(self, bind_code: int, message: str) -> None:
        super().__init__(message)
        self.bind_code = bind_code


SHIM_FAILED = 11
ENTER_FAILED = 12


@attrs.frozen
class SessionContext:
    """What a shim is told when it is bound to a session.

    ``executor_id``, ``cluster_endpoint`` and ``runtime_dir`` are for a shim
    that starts a service: who binds it, where the cluster serves, and a
    private directory of the cluster for its sockets and working directories.
    """

    session_id: str
    application: Application
    common_data: bytes | None
    executor_id: str = ""
    cluster_endpoint: str = ""
    runtime_dir: str = ""


class TaskContext(NamedTuple):
    """What a shim is told of one task."""

    task_id: str
    session_id: str
    input: bytes | None


class ShimSession(Protocol):
    """A shim bound to one session."""

    @property
    def broken(self) -> str | None:
        """Why this shim can run no more tasks (its process is gone), or None while it can.

        Only this, not the text of a failed task, tells the executor to open
        the shim again: a task that merely failed leaves the shim as it was.
        """
        ...

    async def invoke(self, task: TaskContext) -> bytes | None:
        """Run one task and give its output."""
        ...


#: Opens a shim for (application, session-context): an async context manager
#: whose entering is session-enter and whose leaving is session-leave.
ShimOpener = Callable[
    [Application, SessionContext], contextlib.AbstractAsyncContextManager[ShimSession]
]

#: Every shim this cluster can run, by kind. An application whose kind is
#: missing here is refused at registration.
SHIMS: dict[Shim, ShimOpener] = {}


def supported(kind: Shim) -> bool:
    return kind in SHIMS


def open_shim(
    app: Application, session: SessionContext
) -> contextlib.AbstractAsyncContextManager[ShimSession]:
    return SHIMS[app.shim](app, session)


# The shims that come with the cluster register themselves in SHIMS on import.
from . import _log, _shell, _stdio, grpc, host  # noqa: E402, F401
