"""The Grpc shim: v0.4's service contract, for an application that is a long-running service.

Entering (session-enter):

1. serve ``GrpcServiceManager`` on 127.0.0.1 at a free port;
2. start the application's ``command`` with its ``arguments``, its
   ``environments``, ``FLAME_SERVICE_MANAGER`` set to that server's address
   and ``FLAME_SERVICE_TOKEN`` to a secret made for this child, in a
   process group of its own;
3. wait for the registration whose ``service_id`` is the child's pid and
   which carries the secret (the ``flame-service-token`` header): one
   without it is refused with PERMISSION_DENIED, so that no other local
   process can put its own address in the child's place. A child that
   exits first, or does not register within the timeout, fails with a
   message that says so and shows its last lines of output;
4. connect to the address it registered and call ``OnSessionEnter``.

Each task is one ``OnTaskInvoke``. Leaving calls ``OnSessionLeave`` and stops
the child: SIGTERM to its process group, then SIGKILL if it is still there
after a grace period.

A child that exits while the shim is open fails the task it was running, with
its exit status and last lines of output, and makes the shim ``broken``: the
executor then leaves it and opens a new one (a new child) for its next task.

The child's stdout and stderr go, line by line, to the
``flame.local.shims.grpc`` logger, prefixed by application name and pid
(:mod:`._service_process`).

The registration timeout is ``FLAME_SERVICE_REGISTER_TIMEOUT`` (seconds),
read from the application's ``environments`` and then from the cluster's
own environment; 30 s when neither sets it.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from types import TracebackType
from typing import Any

import anyio

from ..._errors import FlameError
from ..._proto.v04 import flame as pb
from ..._transport import Channel, open_grpc_loop, refuse, serve, unary_handler
from ..._wire_check import checked
from ...service._contracts import (
    ENDPOINT_VARIABLE,
    EXECUTOR_VARIABLE,
    MANAGER_VARIABLE,
    TOKEN_HEADER,
    TOKEN_VARIABLE,
)
from .._model import Application, Shim
from . import SHIMS, SessionContext, ShimError, TaskContext
from ._service_process import (
    LEAVE_TIMEOUT,
    START_TIMEOUT_VARIABLE,
    ServiceProcess,
    service_text,
    start_timeout,
)

__all__ = ["REGISTER_TIMEOUT_VARIABLE", "GrpcShim", "open_grpc"]

log = logging.getLogger("flame.local.shims.grpc")

#: Seconds a started service has to register; set in the application's
#: environments or the cluster's environment.
REGISTER_TIMEOUT_VARIABLE = START_TIMEOUT_VARIABLE


def _child_environment(app: Application, manager: str, token: str) -> dict[str, str]:
    env = dict(os.environ)
    # Output reaches the log line by line, not when a buffer fills.
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(app.environments)
    # This executor speaks the Grpc shim contract: the variables of the
    # others (inherited from a service that runs this cluster, say) would
    # have the service runtime listen for an executor that is not there.
    for name in (ENDPOINT_VARIABLE, EXECUTOR_VARIABLE):
        env.pop(name, None)
    env[MANAGER_VARIABLE] = manager
    env[TOKEN_VARIABLE] = token
    return env


class _Manager(pb.GrpcServiceManagerBase):  # type: ignore[misc]
    """The GrpcServiceManager one executor serves to the one child it starts.

    It takes only registrations that carry ``token``, the child's secret.
    """

    def __init__(self, wake: anyio.Event, token: str) -> None:
        self.addresses: dict[str, str] = {}
        self.refused: list[str] = []
        self.wake = wake
        self._token = token.encode()

    def __mapping__(self) -> dict[str, Any]:
        return {
            path: unary_handler(
                self.register_service,
                checked(generated.request_type),
                generated.reply_type,
                metadata=True,
            )
            for path, generated in super().__mapping__().items()
        }

    async def register_service(
        self, message: pb.RegisterServiceRequest, metadata: dict[str, str]
    ) -> pb.RegisterServiceResponse:
        said = metadata.get(TOKEN_HEADER, "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(said, self._token):
            self.refused.append(message.service_id)
            log.warning(
                "refused a registration of service_id %r at %r: it does not carry the "
                "secret the executor gave its service",
                message.service_id,
                message.address,
            )
            raise refuse(
                "PERMISSION_DENIED",
                f"registration refused: only the service this executor started may register; "
                f"it carries the {TOKEN_VARIABLE} of its environment in the {TOKEN_HEADER} "
                "header, as flame.service.run does",
            )
        self.addresses[message.service_id] = message.address
        self.wake.set()
        return pb.RegisterServiceResponse()


class GrpcShim:
    """One service process bound to one session; see the module's docstring."""

    def __init__(self, app: Application, session: SessionContext) -> None:
        self._app = app
        self._name = app.name
        self._session = pb.SessionContext(
            session_id=session.session_id,
            application=pb.ApplicationContext(
                name=app.name, shim=pb.Shim.Grpc, url=app.url, command=app.command
            ),
            common_data=session.common_data,
        )
        self._wake = anyio.Event()
        self._process = ServiceProcess(app.name, log, on_exit=self._woken)
        self._channel: Channel | None = None
        self._stub: pb.GrpcShimStub | None = None

    def _woken(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------
    # What the executor calls

    @property
    def broken(self) -> str | None:
        """How the service ended, once it has: no task can run in this shim any more."""
        return self._process.ended

    async def __aenter__(self) -> GrpcShim:
        if not self._app.command:
            raise ShimError(
                f"application {self._name!r} has no command; a Grpc application needs the "
                "command (and arguments) that start its service"
            )
        register_seconds = start_timeout(self._app)
        # The child's output is pumped by tasks that live as long as the
        # child, in a task group entered here and left in __aexit__ (the same
        # task), which never sees the executor's own exceptions.
        await self._process.open()
        try:
            address = await self._start(register_seconds)
            await self._enter(address)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._stop()
            await self._process.close()
            raise
        return self

    async def invoke(self, task: TaskContext) -> bytes | None:
        """Run one task in the service; its output, or ShimError saying why it failed."""
        assert self._channel is not None and self._stub is not None
        process = self._process
        if process.exited.is_set():
            raise ShimError(await process.gone(f"before task {task.task_id}"))
        request = pb.TaskContext(task_id=task.task_id, session_id=task.session_id, input=task.input)
        try:
            output = await self._channel.unary(self._stub.on_task_invoke, request)
        except FlameError as exc:
            death = await process.failed_call(exc, f"while running task {task.task_id}")
            raise ShimError(death or service_text(exc)) from None
        data: bytes | None = output.data
        return data

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Not shielded: if the cluster is being cancelled, the service is
        # sent SIGTERM at once and leaves the session by itself.
        try:
            await self._leave()
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop()
            await self._process.close()

    # ------------------------------------------------------------------
    # The steps

    async def _start(self, register_seconds: float) -> str:
        """Start the child and give the address it registered."""
        token = secrets.token_urlsafe(32)
        manager = _Manager(self._wake, token)
        loop = open_grpc_loop()
        failure: ShimError | None = None
        address = ""
        try:
            async with serve(loop, [manager]) as server:
                # Failures are raised once the server is closed, rather than
                # from inside its task group.
                try:
                    await self._process.start(
                        [self._app.command or "", *self._app.arguments],
                        env=_child_environment(self._app, server.address, token),
                        cwd=self._app.working_directory or None,
                        what=repr(self._app.command),
                    )
                    address = await self._registration(manager, register_seconds)
                except ShimError as exc:
                    failure = exc
        finally:
            await loop.aclose()
        if failure is not None:
            raise failure
        return address

    async def _registration(self, manager: _Manager, register_seconds: float) -> str:
        process = self._process
        pid = str(process.pid)
        with anyio.move_on_after(register_seconds):
            while pid not in manager.addresses:
                if process.exited.is_set():
                    raise ShimError(await process.gone("before it registered with the executor"))
                await self._wake.wait()
                self._wake = manager.wake = anyio.Event()
            return manager.addresses[pid]
        others = sorted(set(manager.addresses) - {pid})
        hint = (
            f" A service registered with service_id {', '.join(others)}, not the pid of the "
            "process started: the command must be the service itself (a wrapper script "
            "should exec it)."
            if others
            else ""
        )
        if manager.refused:
            hint += (
                f" Registrations without the secret of {TOKEN_VARIABLE} were refused "
                f"(service_id {', '.join(sorted(set(manager.refused)))})."
            )
        raise ShimError(
            f"the service of application {self._name!r} (pid {pid}) did not register within "
            f"{register_seconds:g} s: it must call RegisterService at FLAME_SERVICE_MANAGER, as "
            f"flame.service.run does.{hint}{process.tail_text()}"
        )

    async def _enter(self, address: str) -> None:
        try:
            self._channel = await Channel.connect(address)
        except FlameError as exc:
            raise ShimError(
                f"the service of application {self._name!r} registered {address}, which "
                f"cannot be reached: {exc.message}"
            ) from None
        self._stub = pb.GrpcShimStub(self._channel)
        process = self._process
        try:
            result = await self._channel.unary(self._stub.on_session_enter, self._session)
        except FlameError as exc:
            death = await process.failed_call(exc, "while entering the session")
            raise ShimError(
                death
                or f"the service refused session {self._session.session_id}: {service_text(exc)}"
            ) from None
        if result.return_code != 0:
            raise ShimError(
                f"the service refused session {self._session.session_id}: "
                f"{result.message or f'return code {result.return_code}'}"
            )

    async def _leave(self) -> None:
        if self._channel is None or self._stub is None or self._process.exited.is_set():
            return
        try:
            with anyio.fail_after(LEAVE_TIMEOUT):
                await self._channel.unary(self._stub.on_session_leave, pb.EmptyRequest())
        except (FlameError, TimeoutError) as exc:
            text = service_text(exc) if isinstance(exc, FlameError) else "timed out"
            log.warning(
                "%s: leaving session %s failed: %s", self._name, self._session.session_id, text
            )

    async def _stop(self) -> None:
        """Stop the child and everything this shim started; must not be cancelled."""
        if self._channel is not None:
            await self._channel.aclose()
        await self._process.stop()


def open_grpc(app: Application, session: SessionContext) -> GrpcShim:
    """Open the Grpc shim for ``app``, bound to ``session`` (a ShimOpener)."""
    return GrpcShim(app, session)


SHIMS[Shim.GRPC] = open_grpc
