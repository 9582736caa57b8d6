"""What a generated client stub asks the channel for, without an event loop or a server."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import grpclib.const

Request = tuple[str, grpclib.const.Cardinality, type, type]


class _Requested(Exception):
    """Raised by the recording channel in place of opening a stream."""


class _RecordingChannel:
    """Stands in for grpclib's Channel: remembers what a stub asked for, then stops it."""

    def __init__(self) -> None:
        self.calls: list[Request] = []

    def request(
        self,
        path: str,
        cardinality: grpclib.const.Cardinality,
        request_type: type,
        reply_type: type,
        **kwargs: Any,
    ) -> Any:
        self.calls.append((path, cardinality, request_type, reply_type))
        raise _Requested(path)


def stub_requests(
    pb: ModuleType, service: str, method: str, argument: Any, *, streamed_reply: bool
) -> list[Request]:
    """Call ``<service>Stub.<method>(argument)`` and return what it asked the channel for.

    ``method`` is the stub's (snake_case) name; a server-streaming method is
    an async generator, the others coroutines. The stub asks the channel for a
    stream before its first await, so one step shows the request.
    """
    channel = _RecordingChannel()
    call = getattr(getattr(pb, f"{service}Stub")(channel), method)(argument)
    step = call.__anext__() if streamed_reply else call
    try:
        step.send(None)
    except _Requested:
        return channel.calls
    raise AssertionError(f"{service}Stub.{method} sent nothing to its channel")
