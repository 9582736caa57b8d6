"""The executor's side of the Instance contract (Flame v0.5 and v0.6).

An executor that runs a service under that contract starts the service's
program (see :mod:`._contracts._instance` for its environment), waits for
the socket to appear, and calls it. :class:`InstanceClient` is that
waiting and those calls, over the SDK's own client connection; the
embedded cluster's Host shim makes its calls through it::

    async with await InstanceClient.connect(socket_path, "v0.6") as service:
        pb = service.pb                       # the wire's generated messages
        entered = await service.enter(pb.SessionContext(session_id="1", ...))
        result = await service.invoke(pb.TaskContext(task_id="1", session_id="1"))
        await service.leave()

Replies are the wire's own messages: a ``Result`` or ``TaskResult`` whose
``return_code`` is 0 on success and whose ``message`` says why not. A call
that cannot be made (the service is gone) raises FlameError. No call has
a deadline unless one is given, as a Flame executor sets none.
"""

from __future__ import annotations

import time
from types import ModuleType, TracebackType
from typing import Any

import anyio

from .._errors import FlameError, FlameErrorCode
from .._transport import Channel, Endpoint
from ._contracts._instance import WIRES, InstanceWire, wire_module

__all__ = ["InstanceClient"]

#: How often the socket's path is looked at while waiting for it.
SOCKET_POLL_SECONDS = 0.02


class InstanceClient:
    """Calls one service's ``Instance`` over its Unix socket; see the module's docstring."""

    def __init__(self, channel: Channel, wire: InstanceWire) -> None:
        # Use InstanceClient.connect().
        self._channel = channel
        self.wire = wire
        self.pb: ModuleType = wire_module(wire)
        self._stub = self.pb.InstanceStub(channel)

    @classmethod
    async def connect(
        cls, path: str, wire: InstanceWire, *, wait: float | None = 30.0
    ) -> InstanceClient:
        """Wait until a file exists at ``path`` (at most ``wait`` seconds), then connect.

        ``wire`` is ``"v0.5"`` (``flame.Instance``) or ``"v0.6"``
        (``flame.v1.Instance``). A socket that does not appear in time
        raises FlameError(UNAVAILABLE); with ``wait=None`` it is waited for
        as long as it takes (as a Flame executor does: cancel the caller to
        give up, when the service's process has ended, say).
        """
        if wire not in WIRES:
            raise FlameError(
                FlameErrorCode.INVALID_ARGUMENT,
                f"wire {wire!r} has no Instance contract; use 'v0.5' or 'v0.6'",
            )
        endpoint = Endpoint.unix(path)
        until = None if wait is None else time.monotonic() + wait
        while not await anyio.Path(path).exists():
            if until is not None and time.monotonic() >= until:
                raise FlameError(
                    FlameErrorCode.UNAVAILABLE,
                    f"the service's socket {path} did not appear within {wait:g} s: the "
                    "service must listen there (flame.service.run does)",
                )
            await anyio.sleep(SOCKET_POLL_SECONDS)
        return cls(await Channel.connect(endpoint.url), wire)

    def _check(self, message: Any, kind: str) -> None:
        expected = getattr(self.pb, kind)
        if not isinstance(message, expected):
            raise FlameError(
                FlameErrorCode.INVALID_ARGUMENT,
                f"a {self.wire} service takes a {expected.__module__}.{kind}, "
                f"not {type(message).__module__}.{type(message).__name__}",
            )

    async def enter(self, session: Any, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """``OnSessionEnter``: bind the service to ``session`` (the wire's SessionContext)."""
        self._check(session, "SessionContext")
        return await self._channel.unary(self._stub.on_session_enter, session, timeout=timeout)

    async def invoke(self, task: Any, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """``OnTaskInvoke``: run ``task`` (the wire's TaskContext); its TaskResult."""
        self._check(task, "TaskContext")
        return await self._channel.unary(self._stub.on_task_invoke, task, timeout=timeout)

    async def leave(self, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """``OnSessionLeave``: the session is over."""
        request = self.pb.EmptyRequest()
        return await self._channel.unary(self._stub.on_session_leave, request, timeout=timeout)

    async def aclose(self) -> None:
        """Close the connection (an executor does so before it stops the service)."""
        await self._channel.aclose()

    async def __aenter__(self) -> InstanceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
