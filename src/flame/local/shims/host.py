"""The Host shim: v0.6's service contract, as a v0.6 executor runs an application.

Binding an executor to a session (session-enter):

1. make the socket's path, ``<dir>/<executor-id>.sock``, where ``<dir>`` is
   ``FLAME_SOCKET_DIR`` if the cluster's environment sets it, else a private
   directory of the cluster; and the working directory: the application's
   ``working_directory``, else ``<the cluster's directory>/<executor-id>``,
   made now and removed at the end; ``<working dir>/work/<app>/`` is made
   too, and removed at the end;
2. start the application's ``command`` with its ``arguments`` (``$VAR`` and
   ``${VAR}`` expanded from the environment below, then the cluster's), in a
   process group of its own, in that directory, with the cluster's
   environment plus the application's ``environments`` (expanded the same
   way) and, over them, ``FLAME_INSTANCE_ENDPOINT`` (the socket's path),
   ``FLAME_ENDPOINT`` (the cluster's endpoint), ``RUST_LOG`` and ``FLAME_LOG``
   (the cluster's ``RUST_LOG``, else ``info``), and ``TMPDIR``, ``TEMP`` and
   ``TMP`` (``<working dir>/work/<app>/tmp``) unless already set;
3. wait for a file at the socket's path, then call ``OnSessionEnter`` over
   it (``flame.v1.Instance``, HTTP/2 over the Unix socket): the session's
   id, the application (name, shim, image, command, working directory, url,
   installer; not its arguments or environments) and the common data.

Each task is one ``OnTaskInvoke``, one at a time, with no deadline: a
``TaskResult`` with ``return_code`` 0 makes the task Succeed with its
output; any other return code fails it, keeping the output, with the
result's ``message`` as its error. A gRPC error, or the service's death,
fails the task with what the error says (and, for a death, the service's
last lines of output); the shim is then ``broken``, and the executor lets
the session go: another binds with a new process for its next tasks.

Unbinding calls ``OnSessionLeave``, then stops the process: SIGTERM to its
process group, then, unlike a v0.6 executor, SIGKILL to whatever is left
after a grace period, so that nothing outlives the cluster; the socket and
the directories made are removed.

A bind fails (the executor records it on the session) when the process
cannot start or ends before its socket appears or within
``FLAME_SERVICE_REGISTER_TIMEOUT`` seconds (30 by default; a v0.6 executor
waits for ever), with code 11; or when ``OnSessionEnter`` fails or answers a
non-zero return code, with code 12 (the shim still calls ``OnSessionLeave``
then, as a v0.6 executor does).

The service's stdout and stderr go, line by line, to the
``flame.local.shims.host`` logger (a v0.6 executor writes them to files in
the working directory, which it removes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Mapping
from types import TracebackType

import anyio

from ..._errors import FlameError
from ..._proto.v06.flame import v1 as pb
from ...service._instance_client import SOCKET_POLL_SECONDS, InstanceClient
from .._model import Application, Shim
from . import ENTER_FAILED, SHIM_FAILED, SHIMS, BindError, SessionContext, ShimError, TaskContext
from ._service_process import (
    LEAVE_TIMEOUT,
    ServiceProcess,
    service_text,
    start_timeout,
)

__all__ = ["ENDPOINT_VARIABLE", "SOCKET_DIR_VARIABLE", "SOCKET_VARIABLE", "HostShim", "open_host"]

log = logging.getLogger("flame.local.shims.host")

#: The variables of the v0.6 contract the shim sets: the socket's path, and
#: where the cluster serves.
SOCKET_VARIABLE = "FLAME_INSTANCE_ENDPOINT"
ENDPOINT_VARIABLE = "FLAME_ENDPOINT"

#: The environment variable that moves the services' sockets elsewhere.
SOCKET_DIR_VARIABLE = "FLAME_SOCKET_DIR"

_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def expand(text: str, *environments: Mapping[str, str]) -> str:
    """``text`` with ``$VAR`` and ``${VAR}`` replaced from the first environment that has them.

    A variable none of them has is left as it is.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        for env in environments:
            if name in env:
                return env[name]
        return match.group(0)

    return _VARIABLE.sub(value, text)


class HostShim:
    """One service process bound to one session; see the module's docstring."""

    def __init__(self, app: Application, session: SessionContext) -> None:
        self._app = app
        self._name = app.name
        self._session = session
        self._process = ServiceProcess(app.name, log)
        self._service: InstanceClient | None = None
        self._socket = ""
        self._made: list[str] = []  # directories made for this binding, removed at the end

    # ------------------------------------------------------------------
    # What the executor calls

    @property
    def broken(self) -> str | None:
        """How the service ended, once it has: no task can run in this shim any more."""
        return self._process.ended

    async def __aenter__(self) -> HostShim:
        await self._process.open()
        try:
            await self._start()
            await self._connect()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._stop()
            await self._process.close()
            raise
        try:
            await self._enter()
        except BaseException:
            # As a v0.6 executor does: the shim exists, so it is left.
            try:
                await self._leave()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._stop()
                await self._process.close()
            raise
        return self

    async def invoke(self, task: TaskContext) -> bytes | None:
        """Run one task in the service; its output, or ShimError saying why it failed."""
        assert self._service is not None
        process = self._process
        if process.exited.is_set():
            raise ShimError(await process.gone(f"before task {task.task_id}"))
        request = pb.TaskContext(task_id=task.task_id, session_id=task.session_id, input=task.input)
        try:
            result = await self._service.invoke(request)
        except FlameError as exc:
            death = await process.failed_call(exc, f"while running task {task.task_id}")
            raise ShimError(death or service_text(exc)) from None
        if result.return_code != 0:
            raise ShimError(result.message, output=result.output)
        output: bytes | None = result.output
        return output

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

    def _directories(self) -> tuple[str, str]:
        """The socket's directory and the working directory, made if missing."""
        session = self._session
        base = session.runtime_dir
        socket_dir = os.environ.get(SOCKET_DIR_VARIABLE) or base
        os.makedirs(socket_dir, mode=0o700, exist_ok=True)
        workdir = self._app.working_directory
        if workdir is None:
            workdir = os.path.join(base, session.executor_id)
            os.makedirs(workdir, mode=0o700, exist_ok=True)
            self._made.append(workdir)
        work = os.path.join(workdir, "work", self._name)
        os.makedirs(os.path.join(work, "tmp"), mode=0o700, exist_ok=True)
        self._made.insert(0, work)
        return socket_dir, workdir

    def _environment(self, workdir: str) -> dict[str, str]:
        cluster = dict(os.environ)
        env: dict[str, str] = {}
        for name, value in self._app.environments:
            env[name] = expand(value, env, cluster)
        env[SOCKET_VARIABLE] = self._socket
        env[ENDPOINT_VARIABLE] = self._session.cluster_endpoint
        level = cluster.get("RUST_LOG", "info")
        env["RUST_LOG"] = env["FLAME_LOG"] = level
        merged = {**cluster, **env}
        tmp = os.path.join(workdir, "work", self._name, "tmp")
        for name in ("TMPDIR", "TEMP", "TMP"):
            merged.setdefault(name, tmp)
        # Output reaches the log line by line, not when a buffer fills.
        merged.setdefault("PYTHONUNBUFFERED", "1")
        return merged

    async def _start(self) -> None:
        app = self._app
        try:
            socket_dir, workdir = self._directories()
        except OSError as exc:
            raise BindError(
                SHIM_FAILED, f"cannot make the directories of the service: {exc}"
            ) from None
        self._socket = os.path.join(socket_dir, f"{self._session.executor_id}.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._socket)  # a stale one would look ready
        env = self._environment(workdir)
        argv = [expand(arg, env) for arg in (app.command or "", *app.arguments)]
        try:
            await self._process.start(argv, env=env, cwd=workdir, what=repr(app.command))
        except ShimError as exc:
            raise BindError(SHIM_FAILED, exc.message or "") from None

    async def _connect(self) -> None:
        process = self._process
        seconds = start_timeout(self._app)
        with anyio.move_on_after(seconds):
            while not await anyio.Path(self._socket).exists():
                if process.exited.is_set():
                    raise BindError(
                        SHIM_FAILED, await process.gone("before it listened on its socket")
                    )
                await anyio.sleep(SOCKET_POLL_SECONDS)
            try:
                self._service = await InstanceClient.connect(self._socket, "v0.6", wait=0)
            except FlameError as exc:
                raise BindError(
                    SHIM_FAILED,
                    f"the service of application {self._name!r} made its socket "
                    f"{self._socket}, which cannot be reached: {exc.message}",
                ) from None
            return
        raise BindError(
            SHIM_FAILED,
            f"the service of application {self._name!r} (pid {process.pid}) did not listen on "
            f"{self._socket} within {seconds:g} s: it must serve flame.v1.Instance on the Unix "
            f"socket named by {SOCKET_VARIABLE}.{process.tail_text()}",
        )

    async def _enter(self) -> None:
        assert self._service is not None
        app = self._app
        session = self._session
        context = pb.SessionContext(
            session_id=session.session_id,
            application=pb.ApplicationContext(
                name=app.name,
                shim=pb.Shim.Host,
                image=app.image,
                command=app.command,
                working_directory=app.working_directory,
                url=app.url,
                installer=app.installer,
            ),
            common_data=session.common_data,
        )
        process = self._process
        try:
            result = await self._service.enter(context)
        except FlameError as exc:
            death = await process.failed_call(exc, "while entering the session")
            raise BindError(
                ENTER_FAILED,
                death or f"the service refused session {session.session_id}: {service_text(exc)}",
            ) from None
        if result.return_code != 0:
            raise BindError(
                ENTER_FAILED,
                f"the service refused session {session.session_id}: "
                f"{result.message or f'return code {result.return_code}'}",
            )

    async def _leave(self) -> None:
        if self._service is None or self._process.exited.is_set():
            return
        try:
            with anyio.fail_after(LEAVE_TIMEOUT):
                result = await self._service.leave()
        except (FlameError, TimeoutError) as exc:
            text = service_text(exc) if isinstance(exc, FlameError) else "timed out"
        else:
            if result.return_code == 0:
                return
            text = result.message or f"return code {result.return_code}"
        log.warning("%s: leaving session %s failed: %s", self._name, self._session.session_id, text)

    async def _stop(self) -> None:
        """Stop the process and remove what was made for it; must not be cancelled."""
        if self._service is not None:
            await self._service.aclose()
        await self._process.stop()
        if self._socket:
            with contextlib.suppress(OSError):
                os.unlink(self._socket)
        for directory in self._made:
            shutil.rmtree(directory, ignore_errors=True)


def open_host(app: Application, session: SessionContext) -> HostShim:
    """Open the Host shim for ``app``, bound to ``session`` (a ShimOpener)."""
    return HostShim(app, session)


SHIMS[Shim.HOST] = open_host
