"""FlameError, its codes, and the one table that maps gRPC statuses onto them."""

from __future__ import annotations

import enum

from grpclib.const import Status

__all__ = ["FlameError", "FlameErrorCode", "NamedIntEnum", "code_for_status", "is_v04_refusal"]


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
    and, where it can, what to do about it.
    """

    code: FlameErrorCode
    message: str

    def __init__(self, code: FlameErrorCode, message: str) -> None:
        super().__init__(code, message)
        self.code = FlameErrorCode(code)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"FlameError({self.code.name}, {self.message!r})"

    def __reduce__(self) -> tuple[type[FlameError], tuple[FlameErrorCode, str]]:
        return (type(self), (self.code, self.message))


# Every gRPC status onto the code a user reacts to. A v0.4 session manager
# answers UNKNOWN "unknown" for most refusals (a closed session, a state that
# forbids the call, a storage refusal): those are state errors. Any other
# UNKNOWN carries the text of an exception the server did not expect (grpclib
# says "Internal Server Error", grpcio "Exception calling application: ..."),
# so it is the server's failure: see _UNKNOWN_WITH_REASON.
_STATUS_CODES: dict[Status, FlameErrorCode] = {
    Status.CANCELLED: FlameErrorCode.UNAVAILABLE,
    Status.UNKNOWN: FlameErrorCode.INVALID_STATE,
    Status.INVALID_ARGUMENT: FlameErrorCode.INVALID_ARGUMENT,
    Status.DEADLINE_EXCEEDED: FlameErrorCode.TIMEOUT,
    Status.NOT_FOUND: FlameErrorCode.NOT_FOUND,
    Status.ALREADY_EXISTS: FlameErrorCode.INVALID_STATE,
    Status.PERMISSION_DENIED: FlameErrorCode.INVALID_CONFIG,
    Status.RESOURCE_EXHAUSTED: FlameErrorCode.INVALID_ARGUMENT,
    Status.FAILED_PRECONDITION: FlameErrorCode.INVALID_STATE,
    Status.ABORTED: FlameErrorCode.INVALID_STATE,
    Status.OUT_OF_RANGE: FlameErrorCode.INVALID_ARGUMENT,
    Status.UNIMPLEMENTED: FlameErrorCode.UNIMPLEMENTED,
    Status.INTERNAL: FlameErrorCode.INTERNAL,
    Status.UNAVAILABLE: FlameErrorCode.UNAVAILABLE,
    Status.DATA_LOSS: FlameErrorCode.INTERNAL,
    Status.UNAUTHENTICATED: FlameErrorCode.INVALID_CONFIG,
}

#: UNKNOWN with a message other than the v0.4 refusal's "unknown".
_UNKNOWN_WITH_REASON = FlameErrorCode.INTERNAL


def is_v04_refusal(status: Status, message: str | None) -> bool:
    """Whether this is the bare UNKNOWN "unknown" a v0.4 cluster refuses with."""
    return status is Status.UNKNOWN and (message or "").strip().lower() in ("", "unknown")


def code_for_status(status: Status, message: str | None = None) -> FlameErrorCode:
    """The FlameErrorCode for a gRPC status and its message (OK is not an error: INTERNAL).

    Without a message, UNKNOWN is taken for the v0.4 refusal.
    """
    if status is Status.UNKNOWN and message is not None and not is_v04_refusal(status, message):
        return _UNKNOWN_WITH_REASON
    return _STATUS_CODES.get(status, FlameErrorCode.INTERNAL)
