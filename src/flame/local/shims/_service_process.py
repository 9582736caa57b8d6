"""The process of a service a shim starts for a session: the Grpc and Host shims' common part.

:class:`ServiceProcess` starts the application's command in a process group
of its own, sends its stdout and stderr line by line to the shim's logger
(prefixed by application name and pid) and keeps its last lines, notices
when it ends, and stops it: SIGTERM to the group, then SIGKILL to whatever
is left after a grace period, so that nothing it started outlives it::

    process = ServiceProcess("echo", log)
    await process.open()
    try:
        await process.start(argv, env=env, cwd=None, what="'echo'")  # ShimError if it cannot
        ...                                        # process.ended says how it ended
    finally:
        with anyio.CancelScope(shield=True):
            await process.stop()
        await process.close()                      # in the task that opened it

The tasks that read its output and reap it live in a task group entered by
:meth:`ServiceProcess.open` and left by :meth:`ServiceProcess.close`, which
must be called from the same task; they are shielded from a cancellation of
the executor (the cluster stopping), since stopping the process needs them.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc

from ..._errors import FlameError, FlameErrorCode
from .._model import Application
from . import ShimError

__all__ = [
    "EXIT_GRACE",
    "LEAVE_TIMEOUT",
    "START_TIMEOUT_VARIABLE",
    "STOP_GRACE",
    "ServiceProcess",
    "how_it_ended",
    "service_text",
    "start_timeout",
]

#: Seconds a started service has to be ready (to register, or to listen on
#: its socket); set in the application's environments or the cluster's
#: environment.
START_TIMEOUT_VARIABLE = "FLAME_SERVICE_REGISTER_TIMEOUT"
DEFAULT_START_TIMEOUT = 30.0

#: Seconds a service has, after SIGTERM, to finish its task and leave.
STOP_GRACE = 10.0

#: Seconds OnSessionLeave may take before the service is stopped anyway.
LEAVE_TIMEOUT = 30.0

#: After a failed call, how long to wait to learn whether the service died.
EXIT_GRACE = 2.0

#: Lines of the child's output kept to explain why it failed.
TAIL_LINES = 20

#: A line longer than this is logged in pieces.
MAX_LINE_BYTES = 16 * 1024


# "<Call> on <endpoint> failed: <STATUS>: <what the service said>"
_SERVICE_SAID = re.compile(r" failed: INTERNAL: (?P<text>.*)\Z", re.DOTALL)


def start_timeout(app: Application) -> float:
    """Seconds ``app``'s service has to be ready: ``FLAME_SERVICE_REGISTER_TIMEOUT``, or 30."""
    raw = os.environ.get(START_TIMEOUT_VARIABLE)
    for name, value in app.environments:
        if name == START_TIMEOUT_VARIABLE:
            raw = value
    if raw is None or not raw.strip():
        return DEFAULT_START_TIMEOUT
    try:
        timeout = float(raw)
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        raise ShimError(
            f"{START_TIMEOUT_VARIABLE}={raw!r} is not a number of seconds above 0; "
            "fix it in the application's environments or the cluster's environment"
        )
    return timeout


def service_text(exc: FlameError) -> str:
    """What the service said about a failed call, without the transport's preamble."""
    said = _SERVICE_SAID.search(exc.message)
    return said.group("text") if said else exc.message


def how_it_ended(code: int) -> str:
    """``exited with code 3``, ``was killed by SIGKILL``: an exit status in words."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


class ServiceProcess:
    """One service process; see the module's docstring."""

    def __init__(
        self, name: str, log: logging.Logger, *, on_exit: Callable[[], None] | None = None
    ) -> None:
        self.name = name
        self._log = log
        self._on_exit = on_exit
        self._process: anyio.abc.Process | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.exited = anyio.Event()
        self._drained = anyio.Event()
        self._streams_open = 0
        self._scopes: list[anyio.CancelScope] = []

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def ended(self) -> str | None:
        """How the service ended, once it has: ``the service of application 'x' (pid 7) ...``."""
        process = self._process
        if process is None or not self.exited.is_set():
            return None
        code = process.returncode
        how = how_it_ended(code) if code is not None else "ended"
        return f"the service of application {self.name!r} (pid {process.pid}) {how}"

    async def open(self) -> None:
        """Enter the task group the process's readers will run in; :meth:`close` leaves it.

        Before any scope the caller enters around :meth:`start` (a server it
        runs meanwhile, say): scopes are left in the order opposite to entry.
        """
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()

    async def start(
        self, argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None, what: str
    ) -> None:
        """Start ``argv``; ShimError saying so if it cannot be (``what`` names it)."""
        assert self._tg is not None, "open() first"
        try:
            self._process = await anyio.open_process(
                list(argv), env=dict(env), cwd=cwd, start_new_session=True
            )
        except OSError as exc:
            where = f" in {cwd!r}" if cwd else ""
            raise ShimError(
                f"cannot start the service of application {self.name!r} "
                f"({what}{where}): {exc.strerror or exc}"
            ) from None
        self._streams_open = 2
        self._tg.start_soon(self._shielded, self._pump, self._process.stdout, "stdout")
        self._tg.start_soon(self._shielded, self._pump, self._process.stderr, "stderr")
        self._tg.start_soon(self._shielded, self._reap)
        self._log.info("%s: started the service, pid %d", self.name, self._process.pid)

    async def gone(self, when: str) -> str:
        """Why the service is not there any more, with its last lines of output."""
        await self.exited.wait()
        # Its last words may still be in the pipes.
        with anyio.move_on_after(1.0):
            await self._drained.wait()
        return f"{self.ended} {when}.{self.tail_text()}"

    async def failed_call(self, exc: FlameError, when: str) -> str | None:
        """Why a call to the service failed, if the service's death says it; else None.

        INTERNAL is the service's own answer. Any other failure is how a
        death looks from here (the connection breaks first): the process is
        given a moment to be reaped, so that the error can say how it ended.
        """
        if exc.code is not FlameErrorCode.INTERNAL:
            with anyio.move_on_after(EXIT_GRACE):
                await self.exited.wait()
        if self.exited.is_set():
            return await self.gone(when)
        return None

    def tail_text(self) -> str:
        """`` Its last output:`` and its last lines, or a sentence saying it wrote none."""
        if not self._tail:
            return " It wrote no output."
        return " Its last output:\n" + "\n".join(self._tail)

    def signal_group(self, signum: signal.Signals) -> None:
        """Send ``signum`` to the service's process group, if it is still there."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signum)

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop the service and whatever it started; must not be cancelled (shield it)."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            self.signal_group(signal.SIGTERM)
            with anyio.move_on_after(grace):
                await self.exited.wait()
            if not self.exited.is_set():
                self._log.warning(
                    "%s[%d]: still running %g s after SIGTERM: killing it",
                    self.name,
                    process.pid,
                    grace,
                )
        # Whatever is left of the group (the child, or what it started).
        self.signal_group(signal.SIGKILL)
        await self.exited.wait()
        with anyio.move_on_after(1.0):
            await self._drained.wait()
        # The pipes' ends are closed by process.aclose().
        with contextlib.suppress(Exception):
            await process.aclose()

    async def close(self) -> None:
        """Leave the task group of :meth:`start`; from the task that started it."""
        # Outside any scope entered since start(): a task group's scope must
        # be the innermost one when it is left.
        tg, self._tg = self._tg, None
        if tg is not None:
            # A grandchild that left the group may hold the pipes open.
            for scope in self._scopes:
                scope.cancel()
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)

    # ------------------------------------------------------------------

    async def _shielded(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        # The reaper and the pumps must outlive a cancellation of the
        # executor (the cluster stopping): stopping the child needs them. They
        # end with the child, or when close() cancels their scopes.
        with anyio.CancelScope(shield=True) as scope:
            self._scopes.append(scope)
            await fn(*args)

    async def _reap(self) -> None:
        assert self._process is not None
        code = await self._process.wait()
        self._log.info("%s[%d]: %s", self.name, self._process.pid, how_it_ended(code))
        self.exited.set()
        if self._on_exit is not None:
            self._on_exit()

    async def _pump(self, stream: anyio.abc.ByteReceiveStream | None, which: str) -> None:
        assert self._process is not None
        pid = self._process.pid
        pending = b""

        def emit(raw: bytes) -> None:
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            self._tail.append(line)
            self._log.info("%s[%d] %s: %s", self.name, pid, which, line)

        try:
            if stream is not None:
                async for chunk in stream:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        emit(line)
                    while len(pending) > MAX_LINE_BYTES:
                        emit(pending[:MAX_LINE_BYTES])
                        pending = pending[MAX_LINE_BYTES:]
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the pipe went away with the child
        finally:
            if pending:
                emit(pending)
            self._streams_open -= 1
            if self._streams_open == 0:
                self._drained.set()
