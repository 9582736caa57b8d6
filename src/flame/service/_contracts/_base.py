"""What a contract is, and what the runtime gives it.

A :class:`Contract` knows one executor's wire: where to listen, what to
tell the executor once it listens, and how to turn the executor's messages
into the neutral contexts of :mod:`.._types` and the outcome of a call into
the reply that executor understands. Everything else, calling the
service's handlers, is the runtime's, offered to the contract as
:class:`Calls`. A call that does not run a handler ends in
:class:`CallRefused`; one whose handler fails, in :class:`HandlerFailed`.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

from betterproto2.casing import snake_case

from ..._transport import GrpcLoop, Server, ServerLimits, unary_handler
from ..._wire_check import checked
from .._types import SessionContext, TaskContext

__all__ = ["SERVICE_LIMITS", "CallRefused", "Calls", "Contract", "HandlerFailed", "edge_mapping"]

#: What a service's server accepts. Its one client is the executor, whose
#: connection stays open for the whole binding, however long it waits
#: between tasks (an application's ``delay_release`` may exceed any idle
#: timeout): it is never closed for being idle.
SERVICE_LIMITS = ServerLimits(idle_timeout=None)


class CallRefused(Exception):
    """Raised by :class:`Calls`: the executor's call cannot be answered now.

    ``status`` names the gRPC status a contract that answers with one
    uses: ``FAILED_PRECONDITION`` for a call out of order,
    ``UNAVAILABLE`` while the service stops.
    """

    def __init__(self, status: Literal["FAILED_PRECONDITION", "UNAVAILABLE"], message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class HandlerFailed(Exception):
    """Raised by :class:`Calls`: the service's handler raised, or returned what is no output.

    The text says what happened (``ValueError: ...``); the task or
    session fails with it.
    """


class Calls(Protocol):
    """The service's handlers as the runtime calls them: one call at a time.

    Each method runs on the loop that serves the contract, and raises
    :class:`CallRefused` or :class:`HandlerFailed`.
    """

    async def enter(self, ctx: SessionContext) -> None:
        """Bind the service to the session ``ctx``."""
        ...

    async def invoke(self, ctx: TaskContext) -> bytes | None:
        """Run one task of the session entered; its output."""
        ...

    async def leave(self) -> None:
        """Leave the session entered, if any."""
        ...

    def counted(self, func: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        """``func``, a server's handler of one call, counted until its reply is sent.

        Stopping waits for the calls counted, so that a task in hand is
        answered before the server closes.
        """
        ...


class Contract(abc.ABC):
    """One executor-to-service contract, chosen by :func:`~._contracts.contract_for`."""

    #: What the logs and errors call it: ``"the v0.4 Grpc shim contract"``.
    name: str

    @abc.abstractmethod
    def service(self, calls: Calls) -> Any:
        """The gRPC service (something with ``__mapping__``) that answers the executor."""

    @abc.abstractmethod
    def listen(
        self, loop: GrpcLoop, services: list[Any]
    ) -> contextlib.AbstractAsyncContextManager[Server[Any]]:
        """Serve ``services`` where the executor looks for them, for the ``async with``."""

    async def announce(self, server: Server[Any]) -> None:  # noqa: B027 - most need none
        """Tell the executor where the service is, once ``server`` listens.

        Raises FlameError when the executor cannot be told.
        """


def edge_mapping(generated: Mapping[str, Any], service: object, calls: Calls) -> dict[str, Any]:
    """The handlers of ``service`` for the generated service's ``__mapping__`` ``generated``.

    Each method is answered by the method of ``service`` of the same name
    (``OnTaskInvoke`` by ``on_task_invoke``), its request read by a decoder
    that refuses what does not fit the wire's types (INVALID_ARGUMENT,
    :func:`flame._wire_check.checked`), and counted by ``calls``.
    """
    mapping: dict[str, Any] = {}
    for path, handler in generated.items():
        method = getattr(service, snake_case(path.rsplit("/", 1)[1]))
        served = unary_handler(method, checked(handler.request_type), handler.reply_type)
        mapping[path] = served._replace(func=calls.counted(served.func))
    return mapping
