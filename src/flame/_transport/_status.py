"""gRPC statuses, the failures of a call as the protocol raises them, and what each means to a user.

The protocol (:mod:`._connection`, :mod:`._stream`) ends a failed call with
one of four small exceptions; the pool retries one of them
(:class:`Unprocessed`); the channel turns every one into a
:class:`~flame.FlameError` through :func:`code_for_status`, once, at its edge.
Nothing here knows the server library: servers speak its own types.
"""

from __future__ import annotations

import enum

from .._errors import FlameErrorCode

__all__ = [
    "CallFailed",
    "ConnectionLost",
    "ProtocolViolation",
    "Status",
    "Unprocessed",
    "code_for_status",
    "is_v04_refusal",
]


class Status(enum.IntEnum):
    """A gRPC status code, as the ``grpc-status`` trailer carries it."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class CallFailed(Exception):
    """The server ended the call with a status other than OK.

    Raised by the protocol from the call's trailers, from a reset of its
    stream, or from an HTTP status other than 200.
    """

    def __init__(self, status: Status, message: str | None = None) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return f"{self.status.name}: {self.message}" if self.message else self.status.name


class Unprocessed(CallFailed):
    """UNAVAILABLE for a call the server has said it never processed.

    Raised by the protocol for a stream above a GOAWAY's last stream id, one
    reset with REFUSED_STREAM, or one not started because its connection was
    closing; caught by the pool, which makes the call again: doing so cannot
    do anything twice.
    """

    def __init__(self, message: str) -> None:
        super().__init__(Status.UNAVAILABLE, message)


class ConnectionLost(Exception):
    """The connection ended under the call: the socket closed, or the channel was closed.

    Raised by the protocol to every call still open on the connection.
    """


class ProtocolViolation(Exception):
    """The server broke the rules of HTTP/2 or of gRPC.

    Raised by the protocol to the call concerned, or to every call when the
    connection has to be given up.
    """


# Every gRPC status onto the code a user reacts to. A v0.4 session manager
# answers UNKNOWN "unknown" for most refusals (a closed session, a state that
# forbids the call, a storage refusal): those are state errors. Any other
# UNKNOWN carries the text of an exception the server did not expect (our
# servers say "Internal Server Error", grpcio "Exception calling application: ..."),
# so it is the server's failure: see _UNKNOWN_WITH_REASON.
_STATUS_CODES: dict[Status, FlameErrorCode] = {
    Status.CANCELLED: FlameErrorCode.UNAVAILABLE,
    Status.UNKNOWN: FlameErrorCode.INVALID_STATE,
    Status.INVALID_ARGUMENT: FlameErrorCode.INVALID_ARGUMENT,
    Status.DEADLINE_EXCEEDED: FlameErrorCode.TIMEOUT,
    Status.NOT_FOUND: FlameErrorCode.NOT_FOUND,
    Status.ALREADY_EXISTS: FlameErrorCode.ALREADY_EXISTS,
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
