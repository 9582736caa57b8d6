"""The Frontend service of one cluster, as the client calls it.

A :class:`FrontendCalls` is made by :meth:`Connection.connect
<flame.Connection.connect>` and shared by the connection and every session
object built on it: it holds what each call needs (the channel, the timeout
of one request, whether the connection was closed) and nothing else. The
calls made once or more per task go through the hand-written codec of
:mod:`flame._wire`; the others through the generated stub.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._errors import FlameError, FlameErrorCode
from ._proto.v04 import flame as pb
from ._transport import Channel, Stream
from ._wire import TaskFields, decode_task, encode_create_task, encode_task_request

__all__ = ["FrontendCalls"]

T = TypeVar("T")

_CREATE_TASK = "/flame.Frontend/CreateTask"
_GET_TASK = "/flame.Frontend/GetTask"
_WATCH_TASK = "/flame.Frontend/WatchTask"


class FrontendCalls:
    """The calls of one connection to a Flame cluster's Frontend service.

    ``timeout`` bounds each request (None: no bound); watches are not
    bounded, as tasks may run long. Once :meth:`close` has been called,
    every call is refused with FlameError ``INVALID_STATE``.
    """

    def __init__(self, channel: Channel, timeout: float | None) -> None:
        self._channel = channel
        self.stub = pb.FrontendStub(channel)
        self.timeout = timeout
        self._closed = False

    @property
    def endpoint(self) -> str:
        """The URL of the cluster."""
        return self._channel.endpoint.url

    @property
    def closed(self) -> bool:
        return self._closed

    def check_open(self) -> None:
        """Refuse, with FlameError ``INVALID_STATE``, once the connection is closed."""
        if self._closed:
            raise FlameError(
                FlameErrorCode.INVALID_STATE,
                f"the connection to {self.endpoint} is closed; connect again",
            )

    async def unary(self, method: Callable[[Any], Awaitable[T]], request: Any) -> T:
        """Call ``method``, a method of :attr:`stub`, with ``request``."""
        if self._closed:
            self.check_open()
        return await self._channel.unary(method, request, timeout=self.timeout)

    async def close_session(self, session_id: str) -> pb.Session:
        request = pb.CloseSessionRequest(session_id=session_id)
        return await self.unary(self.stub.close_session, request)

    async def create_task(self, session_id: str, data: bytes) -> TaskFields:
        if self._closed:
            self.check_open()
        return await self._channel.call(
            _CREATE_TASK, encode_create_task(session_id, data), decode_task, timeout=self.timeout
        )

    async def get_task(self, session_id: str, task_id: str) -> TaskFields:
        if self._closed:
            self.check_open()
        return await self._channel.call(
            _GET_TASK, encode_task_request(task_id, session_id), decode_task, timeout=self.timeout
        )

    def watch_task(self, session_id: str, task_id: str) -> Stream[TaskFields]:
        """The WatchTask stream of one task (not bounded in time)."""
        self.check_open()
        return self._channel.open_stream(
            _WATCH_TASK, encode_task_request(task_id, session_id), decode_task
        )

    async def close(self) -> None:
        """Close the channel; calls in flight fail, later ones are refused. Idempotent."""
        self._closed = True
        await self._channel.aclose()
