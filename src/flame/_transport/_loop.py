"""Where grpclib runs: the asyncio loop our servers live on, from asyncio or trio.

grpclib runs only on asyncio; the servers of the SDK (the embedded cluster,
the service runtime, the Grpc shim's manager) are grpclib servers. A
:class:`GrpcLoop` runs their asyncio code from whatever backend the caller
uses:

* under asyncio, :class:`_CallerLoop`: the caller's own loop, and every
  method is a plain ``await``: no thread, no copy, no hop;
* under trio, :class:`_ThreadLoop`: a private asyncio loop in one worker
  thread, and each function handed over is a task there that the trio side
  waits for without blocking and cancels when its own scope is cancelled.
  The trio side returns only once the asyncio task has really ended.

Clients need none of this: a client's calls run on the caller's own backend
(:mod:`._channel`). Why a loop thread and not trio-asyncio: docs/transport.md.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import anyio
import sniffio

from .._errors import FlameError, FlameErrorCode

__all__ = ["GrpcLoop", "open_grpc_loop"]

log = logging.getLogger("flame.transport")

T = TypeVar("T")


class GrpcLoop(abc.ABC):
    """Runs asyncio code for grpclib from whatever backend the caller uses.

    Every method is awaited from the caller's backend; the functions handed in
    run on the asyncio loop that grpclib uses. Cancelling the caller cancels
    the function, and the caller resumes only when it has ended.
    """

    backend: str

    @abc.abstractmethod
    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` on the grpc loop and return its result."""

    @abc.abstractmethod
    def background(
        self, fn: Callable[..., Awaitable[None]], *args: Any
    ) -> contextlib.AbstractAsyncContextManager[Any]:
        """Run ``fn(*args, task_status=...)`` on the grpc loop for the ``async with``.

        Entering waits until ``fn`` calls ``task_status.started(value)`` and
        gives ``value``; leaving cancels ``fn`` and waits for it to end. If
        ``fn`` fails before it starts, entering raises its error as is; if
        it fails later, the body is cancelled and leaving raises the error.
        """

    @abc.abstractmethod
    async def call_back(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """From the grpc loop, run ``await fn(*args)`` on the caller's backend.

        A gRPC handler uses it to run user code where the user expects it.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop what this loop started (a thread under trio); idempotent."""


class _CallerLoop(GrpcLoop):
    """asyncio: grpclib runs on the caller's own loop."""

    backend = "asyncio"

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await fn(*args)

    @contextlib.asynccontextmanager
    async def background(
        self, fn: Callable[..., Awaitable[None]], *args: Any
    ) -> AsyncIterator[Any]:
        try:
            async with anyio.create_task_group() as tg:
                value = await tg.start(cast(Any, fn), *args)
                try:
                    yield value
                finally:
                    tg.cancel_scope.cancel()
        except BaseException as exc:
            # The same error as under trio, not a group around it.
            _raise_single(exc)
            raise

    async def call_back(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await fn(*args)

    async def aclose(self) -> None:
        # Nothing to stop: everything ran on the caller's loop, and each
        # channel or server closed what it opened.
        return None


class _ThreadLoop(GrpcLoop):
    """trio: grpclib runs on a private asyncio loop in one worker thread.

    Crossing between the two is two wake-ups per call: ``call_soon_threadsafe``
    to start (or cancel) an asyncio task, and trio's ``run_sync_soon`` to
    reschedule the waiting trio task when it has ended. No thread is taken
    per call.
    """

    backend = "trio"

    def __init__(self) -> None:
        import trio

        self._trio = trio
        self._token = trio.lowlevel.current_trio_token()
        self._loop = asyncio.new_event_loop()
        self._stopped = trio.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._main, name="flame-grpc-loop", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # Whatever is still there was abandoned by a caller that went
            # away without closing: end it here rather than leak it. Each
            # ended call reschedules its trio task, which reports it.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        except BaseException:  # pragma: no cover - the loop itself broke
            log.exception("the grpc loop thread failed")
        finally:
            asyncio.set_event_loop(None)
            loop.close()
            with contextlib.suppress(Exception):
                self._token.run_sync_soon(self._stopped.set)

    def _closed_error(self) -> FlameError:
        return FlameError(
            FlameErrorCode.INVALID_STATE,
            "the connection is closed; connect again to make more calls",
        )

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        trio = self._trio
        if self._closing:
            raise self._closed_error()
        trio_task = trio.lowlevel.current_task()
        token = self._token
        holder: list[asyncio.Task[T]] = []

        def wake(_: object) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(trio.lowlevel.reschedule, trio_task)

        async def call() -> T:
            return await fn(*args)

        def start() -> None:
            task = self._loop.create_task(call())
            task.add_done_callback(wake)
            holder.append(task)

        def cancel() -> None:
            holder[0].cancel()

        cancelled = False

        def abort(_: Any) -> Any:
            nonlocal cancelled
            cancelled = True
            # Runs after start() on the loop (callbacks run in order). The
            # loop cannot be closed yet: it closes only after every task on
            # it has ended, and ours has not, or we would not be waiting.
            self._loop.call_soon_threadsafe(cancel)
            # FAILED: we are rescheduled by wake() once the asyncio task has
            # really ended, and then deliver the cancellation ourselves.
            return trio.lowlevel.Abort.FAILED

        # A fresh context: the trio side's context says "trio" to sniffio,
        # and anyio code on the loop must see asyncio.
        try:
            self._loop.call_soon_threadsafe(start, context=contextvars.Context())
        except RuntimeError:  # the loop is closed: its thread has ended
            raise self._closed_error() from None
        await trio.lowlevel.wait_task_rescheduled(abort)
        task = holder[0]
        if cancelled and (task.cancelled() or task.exception() is not None):
            await trio.lowlevel.checkpoint()  # raises trio.Cancelled
        # A call that finished before our cancel reached it did happen: its
        # result is returned (a server started, a task created, a connection
        # opened must not be lost), and the cancellation is delivered at the
        # caller's next checkpoint, as trio does for an operation it could
        # not abort.
        if task.cancelled():
            # Not by us: the loop is shutting down under the call.
            raise FlameError(
                FlameErrorCode.UNAVAILABLE,
                "the call was cut short because its connection was closed",
            )
        return task.result()

    @contextlib.asynccontextmanager
    async def background(
        self, fn: Callable[..., Awaitable[None]], *args: Any
    ) -> AsyncIterator[Any]:
        # One asyncio task owns fn's task group from start to end (a task
        # group must be left by the task that entered it); start() and stop()
        # are short calls that talk to it.
        trio = self._trio
        owner_task: list[asyncio.Task[None]] = []
        stop_event: list[asyncio.Event] = []
        # Cancels the caller's body when fn fails while it runs, as a task
        # group does under asyncio; leaving then raises fn's error.
        body = trio.CancelScope()
        token = self._token

        def owner_done(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                with contextlib.suppress(trio.RunFinishedError):
                    token.run_sync_soon(body.cancel)

        async def start() -> Any:
            started: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            stop_event.append(asyncio.Event())

            async def owner() -> None:
                async with anyio.create_task_group() as tg:
                    started.set_result(await tg.start(cast(Any, fn), *args))
                    await stop_event[0].wait()
                    tg.cancel_scope.cancel()

            task = asyncio.get_running_loop().create_task(owner())
            task.add_done_callback(owner_done)
            owner_task.append(task)
            try:
                await asyncio.wait([started, task], return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise
            if started.done():
                return started.result()
            _raise_single(task.exception())  # fn failed before it started
            raise AssertionError("unreachable")  # pragma: no cover

        async def stop() -> None:
            stop_event[0].set()
            try:
                await owner_task[0]
            except BaseException as exc:  # fn failed after it started
                _raise_single(exc)

        value = await self.run(start)
        try:
            with body:
                yield value
        finally:
            with trio.CancelScope(shield=True):
                if self._closing:
                    # The loop's shutdown cancels the owner; wait for it.
                    await self._stopped.wait()
                else:
                    await self.run(stop)

    async def call_back(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        # Runs on the asyncio loop: start fn as a trio task, wait for it here.
        trio = self._trio
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[bool, Any] | None] = loop.create_future()
        state: dict[str, Any] = {"scope": None, "cancel": False}

        def settle(outcome: tuple[bool, Any] | None) -> None:
            if not done.done():
                done.set_result(outcome)

        async def runner() -> None:
            # (True, value), (False, exception), or None when cancelled.
            outcome: tuple[bool, Any] | None = None
            try:
                with trio.CancelScope() as scope:
                    state["scope"] = scope
                    if state["cancel"]:
                        scope.cancel()
                    try:
                        outcome = (True, await fn(*args))
                    except trio.Cancelled:
                        raise
                    except BaseException as exc:
                        # A system task must not raise: hand it over instead.
                        outcome = (False, exc)
            finally:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(settle, outcome)

        def spawn() -> None:
            trio.lowlevel.spawn_system_task(runner, context=contextvars.Context())

        def cancel() -> None:
            state["cancel"] = True
            if state["scope"] is not None:
                state["scope"].cancel()

        try:
            self._token.run_sync_soon(spawn)
        except trio.RunFinishedError:
            raise self._closed_error() from None
        cancelled: asyncio.CancelledError | None = None
        while not done.done():
            try:
                await asyncio.shield(done)
            except asyncio.CancelledError as exc:
                # Cancel the trio side, and go on only once it has ended.
                if cancelled is None:
                    cancelled = exc
                    with contextlib.suppress(trio.RunFinishedError):
                        self._token.run_sync_soon(cancel)
        if cancelled is not None:
            raise cancelled
        outcome = done.result()
        if outcome is None:
            raise FlameError(
                FlameErrorCode.INVALID_STATE,
                f"{getattr(fn, '__qualname__', fn)!s} was cancelled on the trio side "
                "before it finished",
            )
        ok, value = outcome
        if not ok:
            raise value
        return cast(T, value)

    async def aclose(self) -> None:
        if self._closing:
            with self._trio.CancelScope(shield=True):
                await self._stopped.wait()
            return
        self._closing = True
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._loop.stop)
        with self._trio.CancelScope(shield=True):
            await self._stopped.wait()
        # The thread has set _stopped as its very last act: this join is short.
        self._thread.join()


def _raise_single(exc: BaseException | None) -> None:
    """Raise ``exc``, unwrapping the group a task group puts around one error."""
    while exc is not None and _single_group(exc):
        exc = cast("BaseException", exc.exceptions[0])  # type: ignore[attr-defined]
    if exc is not None:
        raise exc


def _single_group(exc: BaseException) -> bool:
    # Duck-typed: BaseExceptionGroup is built in only from Python 3.11.
    inner = getattr(exc, "exceptions", None)
    return isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], BaseException)


def open_grpc_loop() -> GrpcLoop:
    """The GrpcLoop for the running backend; close it with ``aclose()``."""
    library = sniffio.current_async_library()
    if library == "asyncio":
        return _CallerLoop()
    if library == "trio":
        return _ThreadLoop()
    raise FlameError(
        FlameErrorCode.INVALID_CONFIG,
        f"flame runs under asyncio or trio, not {library!r}",
    )
