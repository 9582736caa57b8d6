"""How an executor runs an application's code: one shim per ``Shim`` kind.

A shim is opened once when an executor is bound to a session (session-enter),
invoked once per task, one task after another, and closed when the executor
is released (session-leave)::

    async with open_shim(app, session) as shim:
        output = await shim.invoke(task)      # bytes, or None for no output

``invoke`` raises :class:`ShimError` (or any exception) when the task fails;
the executor marks the task Failed with the error's text as its output. The
same holds for entering: if it fails, the task the executor had in hand is
failed with that text.

``broken`` says whether the shim can run another task: a shim that keeps a
process for the session (Grpc) is broken once that process is gone, and the
executor then closes it and opens a new one for its next task. Shims that
start a process per task are never broken.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

from ..._proto.v04 import flame as pb

__all__ = ["SHIMS", "ShimError", "ShimOpener", "ShimSession", "open_shim", "supported"]


class ShimError(Exception):
    """A task or session failed inside a shim; the text becomes the task's output."""


class ShimSession(Protocol):
    """A shim bound to one session."""

    @property
    def broken(self) -> str | None:
        """Why this shim can run no more tasks (its process is gone), or None while it can.

        Only this, not the text of a failed task, tells the executor to open
        the shim again: a task that merely failed leaves the shim as it was.
        """
        ...

    async def invoke(self, task: pb.TaskContext) -> bytes | None:
        """Run one task and give its output."""
        ...


#: Opens a shim for (application, session-context): an async context manager
#: whose entering is session-enter and whose leaving is session-leave.
ShimOpener = Callable[
    [pb.Application, pb.SessionContext], contextlib.AbstractAsyncContextManager[ShimSession]
]

#: Every shim this cluster can run, by kind. An application whose kind is
#: missing here is refused at registration.
SHIMS: dict[pb.Shim, ShimOpener] = {}


def supported(kind: pb.Shim) -> bool:
    return kind in SHIMS


def open_shim(
    app: pb.Application, session: pb.SessionContext
) -> contextlib.AbstractAsyncContextManager[ShimSession]:
    assert app.spec is not None
    return SHIMS[app.spec.shim](app, session)


# The shims that come with the cluster register themselves in SHIMS on import.
from . import _log, _shell, _stdio, grpc  # noqa: E402, F401
