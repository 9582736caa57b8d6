"""What a connection holds to: message sizes, keepalive, the server's idle time and connection cap.

One definition of each default, for clients and servers alike:

* :data:`MAX_MESSAGE_BYTES`: the largest data a message carries (a task's
  input or output, a session's common data). A request may be that and
  :data:`ENVELOPE_BYTES` more (:func:`request_limit`): the largest a client
  sends and a server reads. A reply may carry both a task's input and its
  output, so a client accepts replies up to twice the limit and the
  envelope (:func:`reply_limit`): a task the cluster accepted can always be
  read back whole.
* :class:`Keepalive`: how a client finds a connection whose peer stopped
  answering without closing it (a dead host, a wedged proxy).
* :class:`ServerLimits`: what a server accepts: the message size, how long a
  connection may stay idle, how many connections it holds at once.
"""

from __future__ import annotations

import attrs

from .._errors import FlameError, FlameErrorCode

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "ENVELOPE_BYTES",
    "MAX_MESSAGE_BYTES",
    "Keepalive",
    "ServerLimits",
    "check_message_limit",
    "reply_limit",
    "request_limit",
]

#: The largest data one message carries, unless told otherwise: gRPC's usual
#: 4 MiB. A task's input, its output, and a session's common data are each
#: at most this large.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

#: What a message carries besides its data: ids, names, states, times,
#: events, and protobuf's framing of them.
ENVELOPE_BYTES = 64 * 1024

#: Seconds a server keeps a connection with no call in flight.
DEFAULT_IDLE_TIMEOUT = 300.0

#: How many connections a server holds at once at most (fewer when the
#: process may open fewer files: see :func:`flame._transport.serve`).
DEFAULT_MAX_CONNECTIONS = 1024

#: The smallest message limit that leaves room for the calls that carry no
#: task data.
_SMALLEST_MESSAGE_LIMIT = 1024

#: The largest a gRPC message can be: its length is a 32-bit number, and a
#: reply must still fit twice the limit.
_LARGEST_MESSAGE_LIMIT = (2**32 - 1 - ENVELOPE_BYTES) // 2


def check_message_limit(value: object, where: str, code: FlameErrorCode) -> int:
    """``value`` as a message size limit; FlameError ``code`` naming ``where`` if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FlameError(code, f"{where} must be a number of bytes, not {value!r}")
    if not _SMALLEST_MESSAGE_LIMIT <= value <= _LARGEST_MESSAGE_LIMIT:
        raise FlameError(
            code,
            f"{where} is {value:,}; give between {_SMALLEST_MESSAGE_LIMIT:,} and "
            f"{_LARGEST_MESSAGE_LIMIT:,} bytes (the default is {MAX_MESSAGE_BYTES:,})",
        )
    return value


def request_limit(max_message_bytes: int) -> int:
    """The largest request message with ``max_message_bytes`` of data: what is sent and read."""
    return max_message_bytes + ENVELOPE_BYTES


def reply_limit(max_message_bytes: int) -> int:
    """The largest reply a client accepts when data is at most ``max_message_bytes``.

    A Task reply carries the task's input and its output, each at most the
    limit, and the fields around them.
    """
    return 2 * max_message_bytes + ENVELOPE_BYTES


def _positive(name: str, value: object, code: FlameErrorCode, owner: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise FlameError(
            code, f"{owner}: {name} must be a number of seconds above 0, not {value!r}"
        )


@attrs.frozen
class Keepalive:
    """How a client finds a connection that stopped answering.

    While calls are in flight on a connection and nothing has come from the
    server for ``interval`` seconds, the client sends a PING; if nothing
    (the PING's answer or anything else) comes within ``timeout`` seconds
    more, the connection is given up: its calls fail with FlameError
    ``UNAVAILABLE``, and the next call opens a new connection. A connection
    with no call in flight is not pinged.
    """

    interval: float = 30.0
    timeout: float = 20.0

    def __attrs_post_init__(self) -> None:
        _positive("interval", self.interval, FlameErrorCode.INVALID_ARGUMENT, "Keepalive")
        _positive("timeout", self.timeout, FlameErrorCode.INVALID_ARGUMENT, "Keepalive")


@attrs.frozen
class ServerLimits:
    """What a server accepts from its clients.

    ``max_message_bytes``: the largest data a request carries; a request
    message larger than :func:`request_limit` of it is refused with
    RESOURCE_EXHAUSTED as soon as its length prefix arrives, before the
    message is read (what the data itself may be, the service checks).
    ``idle_timeout``: a connection with no call in flight for that many
    seconds is told to go away (GOAWAY) and closed; None keeps it.
    ``max_connections``: at most that many connections are held at once; a
    new one beyond the cap takes the place of the one idle longest, or is
    refused (GOAWAY, then closed) when every one has calls in flight; None
    takes :data:`DEFAULT_MAX_CONNECTIONS`, or half the files the process may
    open if that is fewer.
    """

    max_message_bytes: int = MAX_MESSAGE_BYTES
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    max_connections: int | None = None

    def __attrs_post_init__(self) -> None:
        code = FlameErrorCode.INVALID_CONFIG
        check_message_limit(self.max_message_bytes, "max_message_bytes", code)
        if self.idle_timeout is not None:
            _positive("idle_timeout", self.idle_timeout, code, "ServerLimits")
        count = self.max_connections
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise FlameError(code, f"max_connections must be a number, not {count!r}")
        if count is not None and count < 1:
            raise FlameError(code, f"max_connections is {count}; give 1 or more")
