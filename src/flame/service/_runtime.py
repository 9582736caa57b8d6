"""What every contract shares: calling the service's handlers, and its life as a process.

:func:`serve` finds the contract the executor speaks (:mod:`._contracts`),
then

1. serves it where that executor looks (a TCP port, a Unix socket) and
   tells the executor, if its contract asks for that (a registration);
2. answers ``OnSessionEnter``, ``OnTaskInvoke`` and ``OnSessionLeave`` by
   calling the service's handlers, one call at a time (:class:`_Handlers`);
3. stops gracefully on SIGTERM or SIGINT (or when the process that started
   it goes away): the task in hand finishes, the session is left, and it
   returns.

The gRPC server runs on the grpc loop (an asyncio loop; under trio, one in a
thread of its own). A plain handler runs in a worker thread so that it never
blocks that loop; an async handler runs on the backend that called
:func:`serve`, so a trio service's handlers run under trio.
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, TypeVar

import anyio
import anyio.abc
import anyio.to_thread
import attrs

from .._errors import FlameError, FlameErrorCode
from .._transport import GrpcLoop, open_grpc_loop
from ._contracts import CallRefused, HandlerFailed, contract_for
from ._types import SessionContext, TaskContext, TaskOutput

__all__ = ["CA_FILE_VARIABLE", "ENDPOINT_VARIABLE", "FlameService", "run", "serve"]

log = logging.getLogger("flame.service")

T = TypeVar("T")

#: The environment variables of the cluster a service may call back into
#: (set by a v0.6 executor), given to it on its SessionContext.
ENDPOINT_VARIABLE = "FLAME_ENDPOINT"
CA_FILE_VARIABLE = "FLAME_CA_FILE"

#: How often a service checks that the process which started it is still there.
PARENT_CHECK_SECONDS = 1.0

HandlerResult = TaskOutput | bytes | None


class FlameService(abc.ABC):
    """A Flame service: subclass it, override the handlers, and pass it to :func:`run`.

    An executor binds the service to one session at a time: it calls
    :meth:`on_session_enter` once, :meth:`on_task_invoke` once per task (one
    after another, never two at once), and :meth:`on_session_leave` once when
    it is done with the session. Any handler may be a plain method or an
    ``async def``: plain ones run in a worker thread, so a long computation
    does not stop the service from answering; async ones run on the event
    loop that runs the service.

    An exception raised by a handler fails that call: a task fails with the
    exception's text as its error (on Flame v0.4, as its output), and a
    session that cannot be entered fails its tasks.
    """

    def on_session_enter(self, ctx: SessionContext) -> Awaitable[None] | None:
        """The service is bound to the session ``ctx``; prepare for its tasks."""
        return None

    @abc.abstractmethod
    def on_task_invoke(self, ctx: TaskContext) -> HandlerResult | Awaitable[HandlerResult]:
        """Run one task; return its output as bytes, a :class:`TaskOutput`, or None."""

    def on_session_leave(self) -> Awaitable[None] | None:
        """The session is over (or the service is stopping); release what it held."""
        return None


def _is_overridden(service: FlameService, name: str) -> bool:
    return getattr(type(service), name) is not getattr(FlameService, name)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Handlers:
    """The service's handlers, called for a contract (its :class:`~._contracts.Calls`).

    Created on the grpc loop, where every method runs.
    """

    def __init__(
        self, service: FlameService, loop: GrpcLoop, endpoint: str | None, ca_file: str | None
    ) -> None:
        self._service = service
        self._loop = loop
        self._endpoint = endpoint
        self._ca_file = ca_file
        # The grpc loop's own lock (created there: anyio primitives belong to
        # the backend that creates them). Holding it for the length of every
        # call makes calls one at a time, and lets stop() wait for the task
        # in hand by taking it.
        self._lock = anyio.Lock()
        self._session: SessionContext | None = None
        self._stopping = False
        # Calls being answered, counted until their reply is sent: the server
        # cancels whatever is still running when it closes.
        self._active = 0
        self._idle = anyio.Event()
        self._idle.set()

    def counted(self, func: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        async def counted(stream: Any) -> None:
            if self._active == 0:
                self._idle = anyio.Event()
            self._active += 1
            try:
                await func(stream)
            finally:
                self._active -= 1
                if self._active == 0:
                    self._idle.set()

        return counted

    async def _call(self, name: str, *args: Any) -> Any:
        method: Callable[..., Any] = getattr(self._service, name)
        if inspect.iscoroutinefunction(method):
            return await self._loop.call_back(method, *args)
        result = await anyio.to_thread.run_sync(method, *args)
        if inspect.isawaitable(result):
            # A plain method that returned a coroutine: await it where async
            # handlers run.
            return await self._loop.call_back(_await, result)
        return result

    def _refuse_if_stopping(self, call: str) -> None:
        if self._stopping:
            raise CallRefused("UNAVAILABLE", f"{call} refused: the service is stopping")

    async def enter(self, ctx: SessionContext) -> None:
        async with self._lock:
            self._refuse_if_stopping("OnSessionEnter")
            if self._session is not None:
                raise CallRefused(
                    "FAILED_PRECONDITION",
                    f"OnSessionEnter for session {ctx.session_id} refused: the service "
                    f"is still bound to session {self._session.session_id}; call "
                    "OnSessionLeave first",
                )
            ctx = attrs.evolve(ctx, endpoint=self._endpoint, ca_file=self._ca_file)
            if _is_overridden(self._service, "on_session_enter"):
                try:
                    await self._call("on_session_enter", ctx)
                except Exception as exc:
                    log.exception("on_session_enter failed for session %s", ctx.session_id)
                    raise HandlerFailed(_describe(exc)) from None
            self._session = ctx

    async def invoke(self, ctx: TaskContext) -> bytes | None:
        async with self._lock:
            self._refuse_if_stopping("OnTaskInvoke")
            if self._session is None:
                raise CallRefused(
                    "FAILED_PRECONDITION",
                    f"OnTaskInvoke for task {ctx.task_id} refused: no session is "
                    "entered; call OnSessionEnter first",
                )
            try:
                result = await self._call("on_task_invoke", ctx)
            except Exception as exc:
                log.exception("on_task_invoke failed for task %s", ctx.task_id)
                raise HandlerFailed(_describe(exc)) from None
            return _output_bytes(result)

    async def leave(self) -> None:
        async with self._lock:
            await self._leave()

    async def _leave(self) -> None:
        session, self._session = self._session, None
        if session is None or not _is_overridden(self._service, "on_session_leave"):
            return
        try:
            await self._call("on_session_leave")
        except Exception as exc:
            log.exception("on_session_leave failed for session %s", session.session_id)
            raise HandlerFailed(_describe(exc)) from None

    async def stop(self) -> None:
        """Refuse new calls, wait for the one in hand, and leave the session."""
        self._stopping = True
        with anyio.CancelScope(shield=True):
            while self._active:
                await self._idle.wait()
            async with self._lock:
                # A failing on_session_leave is logged by _leave; stopping goes on.
                with contextlib.suppress(HandlerFailed):
                    await self._leave()


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _output_bytes(result: object) -> bytes | None:
    if result is None:
        return None
    if isinstance(result, TaskOutput):
        return result.data
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result)
    hint = " (encode text with .encode())" if isinstance(result, str) else ""
    raise HandlerFailed(
        f"on_task_invoke returned {type(result).__name__}; return bytes, a TaskOutput, "
        f"or None{hint}",
    )


def _variable(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


async def _first_signal(signals: AsyncIterator[int], stop: anyio.Event) -> None:
    async for signum in signals:
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()
        return


async def _watch_parent(parent: int, stop: anyio.Event) -> None:
    # Nothing signals a parent's exit to a process that is not its child's
    # parent: polling is the portable way.
    while os.getppid() == parent:  # noqa: ASYNC110
        await anyio.sleep(PARENT_CHECK_SECONDS)
    log.info("the process that started the service (pid %d) is gone: stopping", parent)
    stop.set()


async def serve(service: FlameService, *, handle_signals: bool = True) -> None:
    """Serve ``service`` to the executor that started this process, on its contract.

    The contract is read from the environment the executor gave:
    ``FLAME_INSTANCE_ENDPOINT`` (Flame v0.6), ``FLAME_SERVICE_MANAGER``
    (v0.4 and ``flame local``) or ``FLAME_EXECUTOR_ID`` (v0.5).

    Runs under asyncio or trio, until SIGTERM or SIGINT (when
    ``handle_signals`` is true and this is the main thread) or until the
    process that started it exits; then it lets the task in hand finish,
    leaves the session, and returns. Cancelling it stops the server at once.

    Raises FlameError(INVALID_CONFIG) when no executor's variable is set (or
    one is not usable), and FlameError(UNAVAILABLE) when a v0.4 executor's
    manager cannot be reached.
    """
    contract = contract_for(os.environ)
    # Taken first: the parent may be gone by the time the service listens.
    parent = os.getppid()
    loop = open_grpc_loop()
    failure: FlameError | None = None
    try:
        handlers = await loop.run(
            _make_handlers,
            service,
            loop,
            _variable(ENDPOINT_VARIABLE),
            _variable(CA_FILE_VARIABLE),
        )
        stop = anyio.Event()
        with contextlib.ExitStack() as stack:
            # Installed before listening, so that a signal at any moment
            # after that is a graceful stop. Leaving restores the default
            # handlers: a second signal during the stop ends the process.
            signals = None
            if handle_signals and threading.current_thread() is threading.main_thread():
                signals = stack.enter_context(
                    anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT)
                )
            async with contract.listen(loop, [contract.service(handlers)]) as server:
                # A failure is raised after the server is closed, on its own
                # rather than inside the server's task group.
                try:
                    await contract.announce(server)
                except FlameError as exc:
                    failure = exc
                else:
                    log.info("serving %s on %s", contract.name, server.address)
                    async with anyio.create_task_group() as tg:
                        if signals is not None:
                            tg.start_soon(_first_signal, signals, stop)
                        tg.start_soon(_watch_parent, parent, stop)
                        await stop.wait()
                        tg.cancel_scope.cancel()
                    await loop.run(handlers.stop)
    finally:
        with anyio.CancelScope(shield=True):
            await loop.aclose()
    if failure is not None:
        raise failure


async def _make_handlers(
    service: FlameService, loop: GrpcLoop, endpoint: str | None, ca_file: str | None
) -> _Handlers:
    return _Handlers(service, loop, endpoint, ca_file)


def run(service: FlameService, *, backend: Literal["asyncio", "trio"] = "asyncio") -> None:
    """Run ``service`` until the executor stops it: the ``main`` of a service program.

    ``backend`` picks the event loop that runs async handlers: ``"asyncio"``
    or ``"trio"``. A configuration problem (no executor's variable, say)
    prints what to do on stderr and exits with status 2; an executor that
    cannot be reached exits with status 1.
    """
    if backend not in ("asyncio", "trio"):
        raise FlameError(
            FlameErrorCode.INVALID_ARGUMENT,
            f"backend {backend!r} is not supported; use 'asyncio' or 'trio'",
        )
    if backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                "backend 'trio' needs trio: pip install 'flame-sdk[trio]'",
            ) from None
    try:
        anyio.run(serve, service, backend=backend)
    except FlameError as exc:
        print(f"flame service: {exc.message}", file=sys.stderr)
        raise SystemExit(2 if exc.code is FlameErrorCode.INVALID_CONFIG else 1) from None
