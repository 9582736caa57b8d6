"""Flame v0.5's and v0.6's contract: ``Instance``, on a Unix socket the executor names.

The executor starts one service process each time it binds to a session,
in a process group of its own, and waits for a file at the socket's path.
The service listens there and answers, one call at a time and with no
deadline, ``OnSessionEnter`` and ``OnSessionLeave`` with a ``Result`` and
each ``OnTaskInvoke`` with a ``TaskResult``: ``return_code`` 0 and the
output, or, when the handler fails, a non-zero ``return_code`` and a
``message`` with its text, which the executor makes the failed task's (or
session's) error. At unbind the executor sends SIGTERM to the process group.

The two versions differ in little:

=====================  ==================================  ===============================
                       v0.6                                v0.5
=====================  ==================================  ===============================
service                ``flame.v1.Instance``               ``flame.Instance``
socket                 ``FLAME_INSTANCE_ENDPOINT``, a      ``/tmp/flame/shim/<id>/fsi.sock``,
                       plain filesystem path               ``<id>`` = ``FLAME_EXECUTOR_ID``
ApplicationContext     adds ``url`` and ``installer``
=====================  ==================================  ===============================

Every reply is a message, never a gRPC error, even for a call out of order
or while the service stops: a v0.5 executor does not fail a task whose
``OnTaskInvoke`` ends in a gRPC error, it makes the call again, forever.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import AsyncIterator, Mapping
from types import ModuleType
from typing import Any, Literal

from ..._errors import FlameError, FlameErrorCode
from ..._transport import GrpcLoop, Server, serve
from ..._types import Shim
from .._types import ApplicationContext, SessionContext, TaskContext
from ._base import SERVICE_LIMITS, CallRefused, Calls, Contract, HandlerFailed, edge_mapping

__all__ = [
    "ENDPOINT_VARIABLE",
    "EXECUTOR_VARIABLE",
    "FAILED",
    "WIRES",
    "InstanceContract",
    "InstanceWire",
    "v05_socket_path",
    "wire_module",
]

#: v0.6: the environment variable that names the socket's path.
ENDPOINT_VARIABLE = "FLAME_INSTANCE_ENDPOINT"

#: v0.5: the environment variable of the executor's id, which names the socket.
EXECUTOR_VARIABLE = "FLAME_EXECUTOR_ID"

#: The return code of a failed call (what the official services send too).
FAILED = -1

InstanceWire = Literal["v0.5", "v0.6"]

#: The package of each wire's generated code, imported when it is served:
#: a service loads the code of one wire only.
WIRES: dict[InstanceWire, str] = {
    "v0.5": "flame._proto.v05.flame",
    "v0.6": "flame._proto.v06.flame.v1",
}


def wire_module(wire: InstanceWire) -> ModuleType:
    """The generated code of ``wire``'s ``Instance`` contract and its messages."""
    return importlib.import_module(WIRES[wire])


# v0.5 and v0.6 number their shims Host = 0, Wasm = 1; a service is Host's.
_SHIMS = {0: Shim.GRPC, 1: Shim.WASM}


def v05_socket_path(executor_id: str) -> str:
    """Where a v0.5 executor looks for the socket of its service."""
    return f"/tmp/flame/shim/{executor_id}/fsi.sock"


def _session_context(message: Any) -> SessionContext:
    app = message.application
    application = (
        ApplicationContext(name="")
        if app is None
        else ApplicationContext(
            name=app.name,
            shim=_SHIMS.get(int(app.shim), Shim.GRPC),
            image=app.image,
            command=app.command,
            working_directory=app.working_directory,
            # v0.5's ApplicationContext has neither.
            url=getattr(app, "url", None),
            installer=getattr(app, "installer", None),
        )
    )
    return SessionContext(
        session_id=message.session_id, application=application, common_data=message.common_data
    )


class _InstanceService:
    """Answers the executor's calls on one wire; every method here runs on the grpc loop."""

    def __init__(self, pb: ModuleType, calls: Calls) -> None:
        self._pb = pb
        self._calls = calls

    def __mapping__(self) -> dict[str, Any]:
        return edge_mapping(self._pb.InstanceBase().__mapping__(), self, self._calls)

    async def on_session_enter(self, message: Any) -> Any:
        try:
            await self._calls.enter(_session_context(message))
        except (CallRefused, HandlerFailed) as exc:
            return self._pb.Result(return_code=FAILED, message=str(exc))
        return self._pb.Result(return_code=0)

    async def on_task_invoke(self, message: Any) -> Any:
        ctx = TaskContext(
            task_id=message.task_id, session_id=message.session_id, input=message.input
        )
        try:
            output = await self._calls.invoke(ctx)
        except (CallRefused, HandlerFailed) as exc:
            return self._pb.TaskResult(return_code=FAILED, message=str(exc))
        return self._pb.TaskResult(return_code=0, output=output)

    async def on_session_leave(self, message: Any) -> Any:
        try:
            await self._calls.leave()
        except HandlerFailed as exc:
            return self._pb.Result(return_code=FAILED, message=str(exc))
        return self._pb.Result(return_code=0)


class InstanceContract(Contract):
    """Serve the ``Instance`` service of ``wire`` on the Unix socket at ``path``."""

    def __init__(self, wire: InstanceWire, path: str) -> None:
        self.wire = wire
        self.path = path
        self.name = f"the {wire} Instance contract"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> InstanceContract:
        endpoint = environ.get(ENDPOINT_VARIABLE, "").strip()
        if endpoint:
            if "://" in endpoint:
                raise FlameError(
                    FlameErrorCode.INVALID_CONFIG,
                    f"{ENDPOINT_VARIABLE}={endpoint!r} is not usable: it must be the "
                    "filesystem path of a Unix socket, with no scheme",
                )
            return cls("v0.6", endpoint)
        executor = environ.get(EXECUTOR_VARIABLE, "").strip()
        if not executor or "/" in executor or executor in (".", ".."):
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"{EXECUTOR_VARIABLE}={executor!r} is not usable: it must be the executor's "
                "id, which names the socket's directory",
            )
        return cls("v0.5", v05_socket_path(executor))

    def service(self, calls: Calls) -> Any:
        return _InstanceService(wire_module(self.wire), calls)

    @contextlib.asynccontextmanager
    async def listen(self, loop: GrpcLoop, services: list[Any]) -> AsyncIterator[Server[Any]]:
        # The executor makes the directory; one that is missing is made here
        # rather than failing, readable by this user alone.
        directory = os.path.dirname(self.path)
        if directory:
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise FlameError(
                    FlameErrorCode.INVALID_CONFIG,
                    f"cannot make the directory of the service's socket {self.path}: "
                    f"{exc.strerror or exc}",
                ) from None
        async with serve(loop, services, path=self.path, limits=SERVICE_LIMITS) as server:
            yield server
