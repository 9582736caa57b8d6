"""FlameError and its codes: how every failure reaches the user.

A refusal comes as a gRPC status (most calls; the transport's
``code_for_status`` reads it) or as a ``Result`` whose ``return_code`` is
not 0 (the application calls; :func:`code_for_result` reads it).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._types import Task

__all__ = ["FlameError", "FlameErrorCode", "NamedIntEnum", "code_for_result", "flame_error_in"]


class NamedIntEnum(enum.IntEnum):
    """An int enum printed by name ("RUNNING"), compared and sent as its integer."""

    def __str__(self) -> str:
        return self.name

    def __format__(self, spec: str) -> str:
        if spec and spec[-1] in "bcdoxXneEfFgG%":
            return int.__format__(self, spec)
        return self.name.__format__(spec)


class FlameErrorCode(NamedIntEnum):
    """Why a Flame call failed: the ``code`` of every :class:`FlameError`.

    This is the one table of the codes; the README and the docs point here.
    The numbers are those of the official Flame clients, so that a code
    logged, pickled or compared as an integer means the same everywhere:

    ====  ==================  ====================================================
    code  name                what to do
    ====  ==================  ====================================================
    0     INVALID_CONFIG      fix the address, TLS settings or configuration file
    1     INVALID_STATE       the object's state forbids the call: change it first
    2     INVALID_ARGUMENT    fix the argument the message names
    3     INTERNAL            the cluster or the SDK failed; the message says where
    4     ALREADY_EXISTS      the name is taken: use the existing object, or another name
    5     NOT_FOUND           give up on that id or name, or create it first
    6     UNAVAILABLE         retry later: the cluster could not be reached, or went away
    7     TIMEOUT             retry, or allow more time (``request_timeout``)
    8     UNIMPLEMENTED       use another call: the cluster does not offer this one
    ====  ==================  ====================================================

    Codes 0 to 3 are those of the API reference; 4 and 5 are those the
    current official client added; 6 to 8 are this SDK's own, after them.
    """

    INVALID_CONFIG = 0
    """The address, TLS settings or configuration file are wrong."""
    INVALID_STATE = 1
    """The object is not in a state that allows the call (a closed session, say)."""
    INVALID_ARGUMENT = 2
    """An argument was refused, locally or by the cluster."""
    INTERNAL = 3
    """The cluster or the SDK failed; the message says where."""
    ALREADY_EXISTS = 4
    """The name is taken (an application registered twice, say)."""
    NOT_FOUND = 5
    """The session, task or application does not exist."""
    UNAVAILABLE = 6
    """The cluster could not be reached, or the connection was lost."""
    TIMEOUT = 7
    """The call did not finish within its timeout."""
    UNIMPLEMENTED = 8
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


def flame_error_in(exc: BaseException) -> FlameError | None:
    """The FlameError ``exc`` is or holds (looking inside exception groups), or None."""
    if isinstance(exc, FlameError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = flame_error_in(inner)
        if found is not None:
            return found
    return None


def _with_task(cls: type[FlameError], code: FlameErrorCode, message: str, task: Task) -> FlameError:
    """Unpickle a FlameError that carries its task (keywords cannot go through ``__reduce__``)."""
    return cls(code, message, task=task)


# A Result carries no status: its text is all there is to tell a name in use
# from a bad argument from a missing object. The first group whose words
# appear wins; anything else is a state the cluster does not allow.
_RESULT_WORDS: tuple[tuple[FlameErrorCode, tuple[str, ...]], ...] = (
    (FlameErrorCode.ALREADY_EXISTS, ("already", "unique constraint", "exists")),
    (FlameErrorCode.NOT_FOUND, ("not found", "does not exist", "not registered")),
    (
        FlameErrorCode.INVALID_ARGUMENT,
        ("invalid", "missing", "required", "empty", "bad ", "must", "unknown", "no spec"),
    ),
)


def code_for_result(message: str | None) -> FlameErrorCode:
    """The FlameErrorCode for a refused ``Result`` (``return_code`` not 0), read from its text.

    A v0.4 cluster answers RegisterApplication and UnregisterApplication
    with a ``Result``, not a gRPC status.
    """
    lowered = (message or "").lower()
    for code, words in _RESULT_WORDS:
        if any(word in lowered for word in words):
            return code
    return FlameErrorCode.INVALID_STATE
