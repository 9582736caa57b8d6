"""The Frontend service of one cluster, as the client calls it.

A :class:`FrontendCalls` is made by :meth:`Connection.connect
<flame.Connection.connect>` and shared by the connection and every session
object built on it: it holds what each call needs (the channel, the codec of
the cluster's wire, the timeout of one request, whether the connection was
closed) and nothing else. The calls made once or more per task go through
the hand-written codec of :mod:`flame._wire`, the same on every wire; the
others through the wire's codec (:mod:`flame._wires`), which also rewords
the refusals of its clusters.
"""

from __future__ import annotations

from typing import TypeVar

from ._errors import FlameError, FlameErrorCode
from ._transport import Channel, Stream
from ._wire import TaskFields, decode_task, encode_create_task, encode_task_request
from ._wires import Call, Wire
from ._wires.probe import answers_tls, probe_wire

__all__ = ["FrontendCalls", "detect_wire"]

T = TypeVar("T")


async def detect_wire(channel: Channel, timeout: float | None) -> str:
    """The wire the server at the end of ``channel`` speaks (:mod:`flame._wires.probe`)."""

    async def call(path: str, request: bytes) -> object:
        return await channel.call(path, request, bytes, timeout=timeout)

    endpoint = channel.endpoint

    async def speaks_tls() -> bool:
        return await answers_tls(endpoint.host, endpoint.port)

    return await probe_wire(call, endpoint.url, None if endpoint.tls else speaks_tls)


class FrontendCalls:
    """The calls of one connection to a Flame cluster's Frontend service.

    ``timeout`` bounds each request (None: no bound); watches are not
    bounded, as tasks may run long. Once :meth:`close` has been called,
    every call is refused with FlameError ``INVALID_STATE``.
    """

    def __init__(self, channel: Channel, timeout: float | None, wire: Wire) -> None:
        self._channel = channel
        self.wire = wire
        self.timeout = timeout
        self._closed = False
        self._create_task = wire.create_task_path
        self._get_task = wire.get_task_path
        self._watch_task = wire.watch_task_path
        self.scale = wire.scale

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

    async def call(self, call: Call[T]) -> T:
        """Make a unary ``call`` of the wire's codec; its refusals are reworded by the codec."""
        if self._closed:
            self.check_open()
        try:
            return await self._channel.call(
                call.path, call.request, call.decode, timeout=self.timeout
            )
        except FlameError as error:
            raise self.wire.refine(call.name, error) from None

    def open_stream(self, call: Call[T]) -> Stream[T]:
        """Open the server stream of ``call`` (not bounded in time)."""
        self.check_open()
        return self._channel.open_stream(call.path, call.request, call.decode)

    async def create_task(self, session_id: str, data: bytes) -> TaskFields:
        if self._closed:
            self.check_open()
        try:
            return await self._channel.call(
                self._create_task,
                encode_create_task(session_id, data),
                decode_task,
                timeout=self.timeout,
            )
        except FlameError as error:
            raise self.wire.refine("CreateTask", error) from None

    async def get_task(self, session_id: str, task_id: str) -> TaskFields:
        if self._closed:
            self.check_open()
        return await self._channel.call(
            self._get_task,
            encode_task_request(task_id, session_id),
            decode_task,
            timeout=self.timeout,
        )

    def watch_task(self, session_id: str, task_id: str) -> Stream[TaskFields]:
        """The WatchTask stream of one task (not bounded in time)."""
        self.check_open()
        return self._channel.open_stream(
            self._watch_task, encode_task_request(task_id, session_id), decode_task
        )

    async def close(self) -> None:
        """Close the channel; calls in flight fail, later ones are refused. Idempotent."""
        self._closed = True
        await self._channel.aclose()
