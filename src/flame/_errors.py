"""FlameError and its codes: how every failure reaches the user."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._types import Task

__all__ = ["FlameError", "FlameErrorCode", "NamedIntEnum"]


class NamedIntEnum(enum.IntEnum):
    """An int enum printed by name ("RUNNING"), compared and sent as its integer."""

    def __str__(self) -> str:
        return self.name

    def __format__(self, spec: str) -> str:
        if spec and spec[-1] in "bcdoxXneEfFgG%":
            return int.__format__(self, spec)
        return self.name.__format__(spec)


class FlameErrorCode(NamedIntEnum):
    """Why a Flame call failed.

    The first four are the codes every Flame SDK shares. The ones after them
    tell apart cases a caller reacts to differently: retry later
    (``UNAVAILABLE``, ``TIMEOUT``), give up on an id (``NOT_FOUND``), or use
    another call because the cluster does not offer this one
    (``UNIMPLEMENTED``).
    """

    INVALID_CONFIG = 0
    """The address, TLS settings or configuration file are wrong."""
    INVALID_STATE = 1
    """The object is not in a state that allows the call (a closed session, say)."""
    INVALID_ARGUMENT = 2
    """An argument was refused, locally or by the cluster."""
    INTERNAL = 3
    """The cluster or the SDK failed; the message says where."""
    NOT_FOUND = 4
    """The session, task or application does not exist."""
    UNAVAILABLE = 5
    """The cluster could not be reached, or the connection was lost."""
    TIMEOUT = 6
    """The call did not finish within its timeout."""
    UNIMPLEMENTED = 7
    """The cluster does not implement this call (a v0.4 cluster lacks several)."""


class FlameError(Exception):
    """The one exception type of the Flame SDK.

    ``code`` says what kind of failure it was; ``message`` says what was wrong
    and, where it can, what to do about it. ``task`` is the task the failure
    is about when there is one: the ``FAILED`` task that ``run_task(...,
    check=True)``, ``run_tasks`` or ``as_completed`` raise for, with its id,
    output and completion time; None when the failure was a call's.
    """

    code: FlameErrorCode
    message: str
    task: Task | None

    def __init__(self, code: FlameErrorCode, message: str, *, task: Task | None = None) -> None:
        super().__init__(code, message)
        self.code = FlameErrorCode(code)
        self.message = message
        self.task = task

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"FlameError({self.code.name}, {self.message!r})"

    def __reduce__(self) -> Any:
        if self.task is None:
            return (type(self), (self.code, self.message))
        return (_with_task, (type(self), self.code, self.message, self.task))


def _with_task(cls: type[FlameError], code: FlameErrorCode, message: str, task: Task) -> FlameError:
    """Unpickle a FlameError that carries its task (keywords cannot go through ``__reduce__``)."""
    return cls(code, message, task=task)
