"""The portal: an event loop on a thread of its own, where the async API runs.

A :class:`Portal` starts one daemon thread running an anyio event loop
(asyncio unless told otherwise) with one task group in it. A blocking call
hands it a :class:`Job`; the job runs in a task of that group, and sends
what it has for the calling thread to a :class:`~flame.sync._caller.Caller`,
where that thread waits.

Handing work over never blocks: the job is spawned in the group by the
backend's thread-safe ``call soon`` (the one place that knows asyncio from
trio). So a KeyboardInterrupt can never leave work running
without a handle on it, and a finalizer can cancel work without waiting.

Closing the portal cancels what still runs, ends the loop and joins the
thread. A job that could not run, or was cut short by the close, answers
its caller with FlameError ``INVALID_STATE`` (the portal's
:attr:`Portal.closed_message`), so no caller waits for ever.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import anyio.abc
import sniffio

from .._errors import FlameError, FlameErrorCode

if TYPE_CHECKING:
    from ._caller import Caller

__all__ = ["BACKENDS", "Answer", "Job", "Outcome", "Portal"]

log = logging.getLogger("flame.sync")

T = TypeVar("T")

BACKENDS = ("asyncio", "trio")
"""The event loops a portal can run: anyio's backends."""


class Outcome(Generic[T]):
    """How a piece of work ended: a value, or an exception to raise in the caller."""

    __slots__ = ("error", "value")

    def __init__(self, value: T | None = None, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error

    def unwrap(self) -> T:
        """The value, or raise the error (an interruption as the exception it was)."""
        error = self.error
        if error is None:
            return self.value  # type: ignore[return-value]
        if isinstance(error, Interrupted):
            raise error.cause
        raise error


class Interrupted(Exception):
    """The calling thread was interrupted (KeyboardInterrupt, say) while the portal waited on it.

    An ``Exception``, so that the async code treats it as the failure of the
    user's own code and ends the work with it; unwrapped in the calling
    thread, it is raised as the exception it carries.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"the calling thread was interrupted: {cause!r}")
        self.cause = cause


class Answer:
    """What a job sends its caller: one outcome, and whether the job has ended."""

    __slots__ = ("final", "job", "outcome")

    def __init__(self, job: Job, outcome: Outcome[Any], final: bool) -> None:
        self.job = job
        self.outcome = outcome
        self.final = final


class Job(abc.ABC):
    """Work run in one task of a portal, answering one caller.

    :meth:`body` is the work. Its value or error is the job's final answer;
    it may send answers before that with :meth:`answer`. :meth:`cancel`,
    from any thread, cancels the body; the final answer is sent anyway
    (whatever ended it) exactly once.
    """

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self._lock = threading.Lock()
        self._scope: anyio.CancelScope | None = None
        self._portal: Portal | None = None
        self._cancelled = False
        self._ended = False

    @abc.abstractmethod
    async def body(self) -> Any:
        """Do the work; what it returns (or raises) is the final answer."""

    def answer(self, outcome: Outcome[Any]) -> None:
        """Send the caller an answer before the final one."""
        self.caller.answer(Answer(self, outcome, final=False))

    def end(self, outcome: Outcome[Any]) -> None:
        """Send the final answer, once; later calls do nothing."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self.caller.answer(Answer(self, outcome, final=True))

    def cancel(self) -> None:
        """Cancel the body, from any thread; it ends soon, and answers."""
        with self._lock:
            self._cancelled = True
            scope, portal = self._scope, self._portal
        if scope is not None and portal is not None:
            portal.soon(scope.cancel)

    async def run(self, portal: Portal) -> None:
        """Run the body in the portal's task group (the portal calls this)."""
        outcome: Outcome[Any] | None = None
        try:
            with anyio.CancelScope() as scope:
                with self._lock:
                    self._scope, self._portal = scope, portal
                    if self._cancelled:
                        scope.cancel()
                try:
                    outcome = Outcome(await self.body())
                except anyio.get_cancelled_exc_class():
                    raise
                except BaseException as exc:
                    # The caller's to raise; never the loop's to die of.
                    outcome = Outcome(error=exc)
        finally:
            # Cancelled (by cancel(), or by the portal closing): nobody waits
            # for a result any more but a caller that must not wait for ever.
            self.end(outcome if outcome is not None else Outcome(error=portal.closed_error()))


class _Call(Job):
    """One coroutine function, called once; its result is the final answer."""

    def __init__(self, caller: Caller, fn: Callable[[], Awaitable[Any]]) -> None:
        super().__init__(caller)
        self._fn = fn

    async def body(self) -> Any:
        return await self._fn()


class Portal:
    """An anyio event loop on a daemon thread of its own, running jobs.

    ``backend`` is ``"asyncio"`` (the default) or ``"trio"``;
    ``backend_options`` are anyio's (``{"use_uvloop": True}`` for asyncio
    with uvloop). Raises FlameError ``INVALID_ARGUMENT`` for another
    backend, ``INVALID_CONFIG`` when the backend cannot start (trio not
    installed, say).
    """

    def __init__(
        self,
        backend: str = "asyncio",
        backend_options: Mapping[str, Any] | None = None,
        *,
        name: str = "flame.sync",
    ) -> None:
        if backend not in BACKENDS:
            raise FlameError(
                FlameErrorCode.INVALID_ARGUMENT,
                f"backend {backend!r} is not supported; use 'asyncio' or 'trio'",
            )
        self.backend = backend
        #: What a call made after the close is told (the owner says what closed).
        self.closed_message = "the portal is closed"
        self._lock = threading.Lock()
        #: Jobs handed over and not ended: those the loop never ran end at its end.
        self._jobs: set[Job] = set()
        self._closing = False
        self._final: Callable[[], Awaitable[None]] | None = None
        self._soon: Callable[..., object] | None = None
        self._group: anyio.abc.TaskGroup | None = None
        self._stop: anyio.Event | None = None
        self._stopping = False  # on the loop thread: no job is started any more
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._main,
            args=(ready, dict(backend_options or {})),
            name=f"{name} ({backend})",
            daemon=True,
        )
        self._thread.start()
        self._wait_ready(ready)

    def _wait_ready(self, ready: Future[None]) -> None:
        try:
            ready.result()
        except BaseException as exc:
            if not ready.done():
                # Interrupted while the loop starts: let it start, then stop it.
                if ready.exception() is None:
                    self.close()
                raise
            self._thread.join()
            if isinstance(exc, Exception):
                raise FlameError(
                    FlameErrorCode.INVALID_CONFIG,
                    f"the {self.backend} event loop could not start ({exc!r}); "
                    + (
                        "install trio (pip install 'flame-sdk[trio]'), or use backend='asyncio'"
                        if self.backend == "trio"
                        else "check the backend_options"
                    ),
                ) from exc
            raise

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closing

    def closed_error(self) -> FlameError:
        """The error a call on the closed portal raises."""
        return FlameError(FlameErrorCode.INVALID_STATE, self.closed_message)

    # -- the loop thread -------------------------------------------------

    def _main(self, ready: Future[None], options: dict[str, Any]) -> None:
        try:
            anyio.run(self._serve, ready, backend=self.backend, backend_options=options)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:  # pragma: no cover - the loop itself broke
                log.exception("the flame.sync event loop failed")
        finally:
            with self._lock:
                self._closing = True
                left, self._jobs = self._jobs, set()
            for job in left:
                job.end(Outcome(error=self.closed_error()))

    async def _serve(self, ready: Future[None]) -> None:
        if self.backend == "trio":
            import trio

            self._soon = trio.lowlevel.current_trio_token().run_sync_soon
        else:
            loop = asyncio.get_running_loop()
            # Callbacks run outside any task: tell anyio which library runs them.
            context = contextvars.copy_context()
            context.run(sniffio.current_async_library_cvar.set, "asyncio")

            def soon(fn: Callable[..., object], *args: Any) -> None:
                loop.call_soon_threadsafe(fn, *args, context=context)

            self._soon = soon
        self._stop = anyio.Event()
        async with anyio.create_task_group() as group:
            self._group = group
            ready.set_result(None)
            await self._stop.wait()
            self._stopping = True
            if self._final is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await self._final()
                    except Exception as exc:
                        log.warning("closing on the flame.sync event loop failed: %r", exc)
            group.cancel_scope.cancel()

    def _spawn(self, job: Job) -> None:
        # On the loop thread. Once stopping, the job is left to _main to end.
        if not self._stopping and self._group is not None:
            self._group.start_soon(self._run_job, job)

    async def _run_job(self, job: Job) -> None:
        try:
            await job.run(self)
        finally:
            with self._lock:
                self._jobs.discard(job)

    def _on_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    # -- any thread ------------------------------------------------------

    def soon(self, fn: Callable[..., object], *args: Any) -> bool:
        """Run ``fn(*args)`` on the loop thread soon, without waiting; False if the loop is gone."""
        soon = self._soon
        if soon is None:
            return False
        try:
            soon(fn, *args)
        except Exception:  # RuntimeError (asyncio), RunFinishedError (trio): it has ended
            return False
        return True

    def start(self, job: Job) -> None:
        """Have ``job`` run in a task of the loop; FlameError ``INVALID_STATE`` once closed."""
        if threading.current_thread() is self._thread:
            # Its caller would wait for the loop it blocks.
            raise FlameError(
                FlameErrorCode.INVALID_STATE,
                "a blocking call was made on the connection's own event loop (from an async "
                "informer method, say), where it would wait for ever; use the async API there",
            )
        with self._lock:
            if self._closing:
                raise self.closed_error()
            self._jobs.add(job)
        if not self.soon(self._spawn, job):
            with self._lock:
                self._jobs.discard(job)
            raise self.closed_error()

    def call(self, fn: Callable[[], Awaitable[T]], caller: Caller | None = None) -> T:
        """Run ``await fn()`` on the loop and return its result; a blocking call.

        The calling thread waits on ``caller`` (a new one if None), running
        the user code the work asks it to run; see :mod:`flame.sync._caller`.
        """
        if caller is None:
            from ._caller import Caller

            caller = Caller(self)
        job = _Call(caller, fn)
        self.start(job)
        outcome: Outcome[T] = caller.wait(job).outcome
        return outcome.unwrap()

    def close(
        self, final: Callable[[], Awaitable[None]] | None = None, *, wait: bool = True
    ) -> None:
        """Stop the loop: run ``await final()`` there (shielded), cancel what still runs, end.

        With ``wait`` (the default), returns once the thread has ended (not
        when called on the loop thread itself, as a finalizer may be).
        Closing again does nothing more.
        """
        with self._lock:
            first = not self._closing
            self._closing = True
            if first:
                self._final = final
        if first:
            self.soon(self._on_stop)
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    @property
    def thread(self) -> threading.Thread:
        """The loop's thread."""
        return self._thread
