"""Flame v0.4's contract: the Grpc shim, over TCP, with a registration.

The executor serves ``GrpcServiceManager`` and starts the service with
``FLAME_SERVICE_MANAGER`` set to its address. The service

1. serves ``flame.GrpcShim`` on 127.0.0.1 at a free port,
2. calls ``RegisterService`` there with that address and its process id,
3. answers ``OnSessionEnter`` and ``OnSessionLeave`` with a ``Result`` and
   ``OnTaskInvoke`` with a ``TaskOutput``. A failed handler fails the call
   with gRPC status INTERNAL and its text, which the executor makes the
   failed task's output.

A registration proves that it comes from the child the executor started
when the executor gives that child a secret: the embedded cluster sets
``FLAME_SERVICE_TOKEN``, and the registration carries it in the
``flame-service-token`` header. A v0.4 executor sets none and reads no
header, so without the variable nothing is sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from ..._errors import FlameError, FlameErrorCode
from ..._proto.v04 import flame as pb
from ..._transport import Channel, Endpoint, GrpcLoop, Server, pid, refuse, serve
from ..._types import Shim
from .._types import ApplicationContext, SessionContext, TaskContext
from ._base import SERVICE_LIMITS, CallRefused, Calls, Contract, HandlerFailed, edge_mapping

__all__ = ["MANAGER_VARIABLE", "TOKEN_HEADER", "TOKEN_VARIABLE", "GrpcShimContract"]

#: The environment variable that carries the executor's GrpcServiceManager address.
MANAGER_VARIABLE = "FLAME_SERVICE_MANAGER"

#: The environment variable of the secret a registration must carry, when set.
TOKEN_VARIABLE = "FLAME_SERVICE_TOKEN"

#: The header of the registration that carries that secret.
TOKEN_HEADER = "flame-service-token"

#: Seconds the registration may take.
REGISTER_TIMEOUT = 30.0

_SHIMS = tuple(Shim)


def _session_context(message: pb.SessionContext) -> SessionContext:
    app = message.application
    application = (
        ApplicationContext(name="")
        if app is None
        else ApplicationContext(
            name=app.name,
            shim=_SHIMS[int(app.shim)] if 0 <= int(app.shim) < len(_SHIMS) else Shim.GRPC,
            url=app.url,
            command=app.command,
        )
    )
    return SessionContext(
        session_id=message.session_id, application=application, common_data=message.common_data
    )


def _refused(exc: CallRefused | HandlerFailed) -> Exception:
    if isinstance(exc, CallRefused):
        return refuse(exc.status, exc.message)
    return refuse("INTERNAL", str(exc))


class _GrpcShimService(pb.GrpcShimBase):  # type: ignore[misc]
    """Answers the executor's calls; every method here runs on the grpc loop."""

    def __init__(self, calls: Calls) -> None:
        self._calls = calls

    def __mapping__(self) -> dict[str, Any]:
        return edge_mapping(super().__mapping__(), self, self._calls)

    async def on_session_enter(self, message: pb.SessionContext) -> pb.Result:
        try:
            await self._calls.enter(_session_context(message))
        except (CallRefused, HandlerFailed) as exc:
            raise _refused(exc) from None
        return pb.Result(return_code=0)

    async def on_task_invoke(self, message: pb.TaskContext) -> pb.TaskOutput:
        ctx = TaskContext(
            task_id=message.task_id, session_id=message.session_id, input=message.input
        )
        try:
            return pb.TaskOutput(data=await self._calls.invoke(ctx))
        except (CallRefused, HandlerFailed) as exc:
            raise _refused(exc) from None

    async def on_session_leave(self, message: pb.EmptyRequest) -> pb.Result:
        try:
            await self._calls.leave()
        except HandlerFailed as exc:
            raise _refused(exc) from None
        return pb.Result(return_code=0)


class GrpcShimContract(Contract):
    """Serve ``GrpcShim`` on 127.0.0.1 and register with the manager at ``manager``."""

    name = "the v0.4 Grpc shim contract"

    def __init__(self, manager: str, token: str | None) -> None:
        self.manager = manager
        self._token = token

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> GrpcShimContract:
        manager = environ[MANAGER_VARIABLE].strip()
        try:
            Endpoint.parse(manager)
        except FlameError as exc:
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG, f"{MANAGER_VARIABLE} is not usable: {exc.message}"
            ) from None
        return cls(manager, environ.get(TOKEN_VARIABLE) or None)

    def service(self, calls: Calls) -> Any:
        return _GrpcShimService(calls)

    def listen(
        self, loop: GrpcLoop, services: list[Any]
    ) -> contextlib.AbstractAsyncContextManager[Server[Any]]:
        return serve(loop, services, limits=SERVICE_LIMITS)

    async def announce(self, server: Server[Any]) -> None:
        headers = [(TOKEN_HEADER, self._token)] if self._token else []
        async with await Channel.connect(self.manager, headers=headers) as channel:
            stub = pb.GrpcServiceManagerStub(channel)
            request = pb.RegisterServiceRequest(address=server.address, service_id=str(pid()))
            await channel.unary(stub.register_service, request, timeout=REGISTER_TIMEOUT)
