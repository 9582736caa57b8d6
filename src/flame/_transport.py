"""The transport: the one module that knows grpclib and the asyncio/trio question.

grpclib runs only on asyncio. Everything else in the package is written with
anyio and runs on either backend; it reaches grpclib only through the
:class:`GrpcLoop` defined here, which has two implementations:

* under asyncio, :class:`_CallerLoop`: grpclib runs on the caller's own loop,
  and every method is a plain ``await``: no thread, no copy, no hop;
* under trio, :class:`_ThreadLoop`: grpclib runs on a private asyncio loop in
  one worker thread, and each call is a task on that loop which the trio side
  waits for without blocking and cancels when its own scope is cancelled. The
  trio side returns only once the asyncio task has really ended, so a
  cancelled call has sent its RST_STREAM before the caller moves on.

Why a loop thread and not trio-asyncio or anything else: docs/transport.md.

On top of that, :class:`Channel` (a client connection to one endpoint) and
:func:`serve` (a gRPC server on 127.0.0.1) are what the rest of the package
uses. Every grpclib failure leaves this module as a :class:`FlameError` that
names the call, the endpoint and what the server said.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import contextvars
import copy
import logging
import os
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar, cast

import anyio
import attrs
import grpclib.client
import grpclib.const
import grpclib.exceptions
import grpclib.protocol
import grpclib.server
import h2.settings
import sniffio
from grpclib.const import Cardinality, Status

from . import _http2
from ._errors import FlameError, FlameErrorCode, code_for_status, is_v04_refusal

__all__ = [
    "Channel",
    "Endpoint",
    "GrpcLoop",
    "Server",
    "open_grpc_loop",
    "serve",
]

log = logging.getLogger("flame.transport")

T = TypeVar("T")

#: How many messages of a server stream may wait between the network and a
#: trio consumer. Small: a watch carries a handful of messages, and a slow
#: consumer should hold back the network, not memory.
STREAM_BUFFER = 8

#: grpclib's own default maximum message size is 4 MiB; ours are the same, but
#: named so that the cluster and the client agree.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


# --------------------------------------------------------------------------
# Endpoints


@attrs.frozen
class Endpoint:
    """A parsed Flame endpoint: ``http://host:port`` or ``https://host:port``."""

    url: str
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Parse ``url``; a bad one raises FlameError(INVALID_CONFIG) saying why."""
        if not isinstance(url, str) or not url.strip():
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"endpoint {url!r} is empty; give one like 'http://127.0.0.1:8080'",
            )
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https", "grpc", "grpcs"):
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"endpoint {url!r} has scheme {parts.scheme or '(none)'!r}; "
                "use 'http://host:port', or 'https://host:port' for TLS",
            )
        try:
            port = parts.port
        except ValueError:
            port = -1
        if not parts.hostname or port is None or port <= 0:
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"endpoint {url!r} needs a host and a port, like 'http://127.0.0.1:8080'",
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"endpoint {url!r} has a path or query; give only scheme, host and port",
            )
        tls = parts.scheme in ("https", "grpcs")
        return cls(url=url.strip(), host=parts.hostname, port=port, tls=tls)

    def __str__(self) -> str:
        return self.url


def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise FlameError(
            FlameErrorCode.INVALID_CONFIG,
            f"cannot load the CA file {ca_file!r}: {exc}",
        ) from None
    context.set_alpn_protocols(["h2"])
    return context


# --------------------------------------------------------------------------
# Where grpclib runs


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
    def iterate(
        self, open_stream: Callable[[], AsyncIterator[T]]
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[T]]:
        """Iterate the async iterator ``open_stream()`` from the caller's side.

        The iterator is created, advanced and closed on the grpc loop; leaving
        the ``async with`` closes it at once, wherever it was.
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

    @contextlib.asynccontextmanager
    async def iterate(
        self, open_stream: Callable[[], AsyncIterator[T]]
    ) -> AsyncIterator[AsyncIterator[T]]:
        stream = open_stream()
        try:
            yield stream
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

    async def call_back(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await fn(*args)

    async def aclose(self) -> None:
        # Nothing to stop: everything ran on the caller's loop, and each
        # channel or server closed what it opened.
        return None


class _End:
    """Marks the end of a bridged stream."""


_END = _End()


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
            "the connection is closed; open a new one to make more calls",
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

    async def _run_if_open(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        # For clean-up: once the loop is closing, it ends everything itself.
        if not self._closing:
            with contextlib.suppress(FlameError):
                await self.run(fn, *args)

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

    @contextlib.asynccontextmanager
    async def iterate(
        self, open_stream: Callable[[], AsyncIterator[T]]
    ) -> AsyncIterator[AsyncIterator[T]]:
        queue: asyncio.Queue[Any] = asyncio.Queue(STREAM_BUFFER)
        pump_task: list[asyncio.Task[None]] = []

        async def pump() -> None:
            stream = open_stream()
            try:
                async for item in stream:
                    await queue.put(item)
                await queue.put(_END)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                await queue.put(exc)
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()

        async def start() -> None:
            pump_task.append(asyncio.get_running_loop().create_task(pump()))

        async def stop() -> None:
            task = pump_task[0]
            # The pump may be blocked on a full queue, or inside the stream:
            # cancelling reaches it in both places, and closing the stream
            # resets the call, so the server sees it end.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        async def take() -> list[Any]:
            # One hop brings every message already waiting, not just one.
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            return batch

        async def items() -> AsyncGenerator[T, None]:
            while True:
                for item in await self.run(take):
                    if item is _END:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    yield item

        await self.run(start)
        iterator = items()
        try:
            yield iterator
        finally:
            with self._trio.CancelScope(shield=True):
                await iterator.aclose()
                await self._run_if_open(stop)

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


# --------------------------------------------------------------------------
# Client channels


def _grpc_failure(
    exc: BaseException, call: str, endpoint: Endpoint, timeout: float | None = None
) -> FlameError:
    """Turn what grpclib or the network raised into a FlameError.

    The order matters: ``TimeoutError`` and ``ssl.SSLError`` are both kinds of
    ``OSError``, and each deserves its own answer.
    """
    where = f"{call} on {endpoint}"
    if isinstance(exc, FlameError):
        return exc
    if isinstance(exc, grpclib.exceptions.GRPCError):
        said = exc.message or exc.status.name
        code = code_for_status(exc.status, exc.message)
        if is_v04_refusal(exc.status, exc.message):
            # What a v0.4 session manager sends for most refusals.
            said = (
                "the cluster refused the call without a reason (UNKNOWN 'unknown'); a v0.4 "
                "cluster answers so when the session is closed or the object's state forbids "
                "the call"
            )
        elif exc.status is Status.UNIMPLEMENTED:
            said = f"the cluster does not implement {call} ({said})"
        return FlameError(code, f"{where} failed: {exc.status.name}: {said}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        within = f" within {timeout:g} s" if timeout is not None else " in time"
        return FlameError(FlameErrorCode.TIMEOUT, f"{where} did not finish{within}")
    if isinstance(exc, grpclib.exceptions.StreamTerminatedError):
        return FlameError(
            FlameErrorCode.UNAVAILABLE, f"{where} failed: the connection was lost ({exc})"
        )
    if isinstance(exc, ssl.SSLError):
        return FlameError(FlameErrorCode.INVALID_CONFIG, f"{where} failed: {_tls_advice(exc)}")
    if isinstance(exc, OSError):
        return FlameError(
            FlameErrorCode.UNAVAILABLE,
            f"{where} failed: cannot reach the cluster ({_os_reason(exc)})",
        )
    if isinstance(exc, grpclib.exceptions.ProtocolError):
        return FlameError(FlameErrorCode.INTERNAL, f"{where} failed: protocol error: {exc}")
    return FlameError(FlameErrorCode.INTERNAL, f"{where} failed: {type(exc).__name__}: {exc}")


def _os_reason(exc: BaseException) -> str:
    # asyncio says "Connect call failed (address)"; the errno says why.
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int) and errno > 0:
        return os.strerror(errno).lower()
    return str(getattr(exc, "strerror", None) or exc)


def _tls_advice(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS: the server's certificate is not trusted ({exc.verify_message}); give "
            "the file of the CA that signed it, or fix the host name in the endpoint"
        )
    return f"TLS: {exc.reason or exc}; is the endpoint really https://?"


def _uncancel_deadline(task: asyncio.Task[Any] | None, cancelling: int) -> None:
    """Undo the cancel request grpclib's deadline made on ``task``.

    On a deadline grpclib cancels the waiting task and raises TimeoutError
    instead, without taking the request back. Left there, it makes the task
    look cancelled to every ``asyncio.timeout``, TaskGroup and anyio cancel
    scope that task later leaves (Python >= 3.11 counts the requests).
    """
    if task is not None and _cancelling(task) > cancelling:
        task.uncancel()  # type: ignore[attr-defined,unused-ignore]


def _cancelling(task: asyncio.Task[Any] | None) -> int:
    # Task.cancelling() exists from Python 3.11; before it nothing is counted.
    counter = getattr(task, "cancelling", None)
    return int(counter()) if counter is not None else 0


Req = TypeVar("Req")
Resp = TypeVar("Resp")


class _BatchedWrites:
    """A transport that sends what grpclib writes in one turn of the event loop at once.

    grpclib writes each HTTP/2 frame group as soon as it has it: the headers
    of a call, then its message, then (on a server) the trailers, each a
    system call of its own. With many calls in flight, that is several sends
    per call where one per loop turn would do. Here writes are gathered and
    sent by a callback scheduled with ``call_soon``, which runs right after
    the callbacks of the current turn: the same bytes in the same order,
    sent before the loop waits for anything again.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


#: How many closed streams a connection remembers (h2 keeps 65,536 by default).
#: h2 uses them to answer a frame that arrives after its stream was reset; a
#: frame comes that late only after a few streams, not thousands, have closed
#: since. With two streams per task, the default made a client's memory grow
#: over its first 32,768 tasks; this bound is reached after 8,192.
CLOSED_STREAMS_KEPT = 16_384


class _BoundedProtocol(grpclib.protocol.H2Protocol):  # type: ignore[misc,unused-ignore]
    """grpclib's connection, remembering at most CLOSED_STREAMS_KEPT closed streams."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        h2_connection = getattr(self.connection, "_connection", None)
        closed = getattr(h2_connection, "_closed_streams", None)
        if closed is not None and hasattr(closed, "_size_limit"):
            closed._size_limit = CLOSED_STREAMS_KEPT


#: How many streams a client may have open at once on our servers. h2 offers
#: 100; a client running tasks holds one watch per task in flight, and beyond
#: the limit grpclib queues new calls, waking every queued one at each close.
SERVER_MAX_STREAMS = 1024


class _ServingProtocol(_BoundedProtocol):
    """A server connection: batched writes, and room for many streams.

    Only servers batch their writes. A server answers many calls in one turn
    of its loop, and one send for all of them halves its system calls. When
    both ends of one connection batched (our client on our cluster), a run of
    64 calls in flight through grpclib's own streams went at half the speed,
    for no more CPU on either side, while either end alone did not slow it:
    so clients write through.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(cast(Any, _BatchedWrites(cast(asyncio.Transport, transport))))
        h2_connection = getattr(self.connection, "_connection", None)
        if h2_connection is not None:
            h2_connection.update_settings(
                {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: SERVER_MAX_STREAMS}
            )
            self.connection.flush()


class _BatchingServer(grpclib.server.Server):  # type: ignore[misc,unused-ignore]
    """grpclib's server, its connections those of :class:`_ServingProtocol`."""

    def _protocol_factory(self) -> grpclib.protocol.H2Protocol:
        protocol = super()._protocol_factory()
        # grpclib builds the protocol with its handler; only the class changes
        # (a subclass that adds no state of its own).
        protocol.__class__ = _ServingProtocol
        return protocol


class _LossAwareProtocol(_BoundedProtocol):
    """grpclib's connection, telling when its socket is really gone."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lost = asyncio.Event()

    def connection_lost(self, exc: BaseException | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self.lost.set()


class _GrpcChannel(grpclib.client.Channel):  # type: ignore[misc,unused-ignore]
    """A grpclib channel whose close can wait until its socket is closed."""

    def _protocol_factory(self) -> grpclib.protocol.H2Protocol:
        return _LossAwareProtocol(grpclib.client.Handler(), self._config, self._h2_config)

    async def close_and_wait(self, bound: float = 5.0) -> None:
        protocol = getattr(self, "_protocol", None)
        self.close()
        if isinstance(protocol, _LossAwareProtocol):
            # A TLS connection first exchanges close_notify; the bound only
            # keeps a peer that never answers from holding us.
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(protocol.lost.wait(), bound)
        else:
            await asyncio.sleep(0)


class Channel:
    """A client connection to one gRPC endpoint, usable from asyncio or trio.

    Open it with :meth:`connect` and close it with :meth:`aclose` (or use it as
    an async context manager). Generated stubs are bound to :attr:`grpc` and
    called through :meth:`unary` and :meth:`stream`, which run them where
    grpclib lives and translate failures into FlameError. The calls made
    once per task, :meth:`call` and :meth:`open_stream`, go over a second,
    lean connection (:mod:`flame._http2`) that runs on the caller's own
    backend, trio included.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        loop: GrpcLoop,
        grpc: grpclib.client.Channel,
        task_calls: _TaskCallConnections,
    ) -> None:
        self.endpoint = endpoint
        self.loop = loop
        self.grpc = grpc
        self._task_calls = task_calls
        self._closed = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        ca_file: str | None = None,
        connect_timeout: float | None = 10.0,
    ) -> Channel:
        """Connect to ``url``; raise FlameError if it cannot be reached in time.

        An ``https://`` endpoint uses TLS, trusting the system's CAs, or only
        the CA in ``ca_file`` when one is given.
        """
        endpoint = Endpoint.parse(url)
        if ca_file is not None and not endpoint.tls:
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"a CA file was given for {url!r}, which is not https://; "
                "use an https:// endpoint, or drop the CA file",
            )
        context = _ssl_context(ca_file) if endpoint.tls else None
        loop = open_grpc_loop()
        try:
            task_calls = _TaskCallConnections(endpoint, context, connect_timeout, loop.backend)

            async def make() -> grpclib.client.Channel:
                channel = _GrpcChannel(endpoint.host, endpoint.port, ssl=context)
                try:
                    await asyncio.wait_for(channel.__connect__(), connect_timeout)
                except BaseException:
                    channel.close()
                    raise
                return channel

            try:
                grpc = await loop.run(make)
                try:
                    await task_calls.get()
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await task_calls.aclose()
                        with contextlib.suppress(FlameError):
                            await loop.run(_close_grpc, grpc)
                    raise
            except (asyncio.TimeoutError, TimeoutError):
                raise FlameError(
                    FlameErrorCode.UNAVAILABLE,
                    f"cannot connect to {endpoint}: no answer within {connect_timeout:g} s; "
                    "is the cluster running, and is the address right?",
                ) from None
            except ssl.SSLError as exc:
                raise FlameError(
                    FlameErrorCode.INVALID_CONFIG,
                    f"cannot connect to {endpoint}: {_tls_advice(exc)}",
                ) from None
            except (OSError, grpclib.exceptions.ProtocolError) as exc:
                raise FlameError(
                    FlameErrorCode.UNAVAILABLE,
                    f"cannot connect to {endpoint}: {_os_reason(exc)}; "
                    "is the cluster running, and is the address right?",
                ) from None
        except BaseException:
            with anyio.CancelScope(shield=True):
                await loop.aclose()
            raise
        return cls(endpoint, loop, grpc, task_calls)

    def _check_open(self, call: str) -> None:
        if self._closed:
            raise FlameError(
                FlameErrorCode.INVALID_STATE,
                f"{call} on {self.endpoint}: the connection is closed; open a new one",
            )

    async def unary(
        self,
        method: Callable[..., Awaitable[Resp]],
        request: Any,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline, sent to the server
    ) -> Resp:
        """Call the bound stub ``method`` with ``request``; errors become FlameError."""
        call = _stub_call_name(method)
        self._check_open(call)
        try:
            return await self.loop.run(_call_unary, method, request, timeout)
        except Exception as exc:
            raise _grpc_failure(exc, call, self.endpoint, timeout) from None

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: Callable[..., AsyncIterator[Resp]],
        request: Any,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline, sent to the server
    ) -> AsyncIterator[AsyncIterator[Resp]]:
        """Open the server stream of the bound stub ``method``; closed on exit.

        ``timeout`` bounds the whole stream, not each message.
        """
        call = _stub_call_name(method)
        self._check_open(call)

        async def translated() -> AsyncIterator[Resp]:
            task = asyncio.current_task()
            cancelling = _cancelling(task)
            responses, opened = _open_stub_stream(method, request, timeout)
            try:
                async for item in responses:
                    yield item
            except (asyncio.TimeoutError, TimeoutError) as exc:
                _uncancel_deadline(task, cancelling)
                raise _grpc_failure(exc, call, self.endpoint, timeout) from None
            except Exception as exc:
                raise _grpc_failure(exc, call, self.endpoint, timeout) from None
            finally:
                # Close the generators now, not when they are collected:
                # closing the innermost leaves grpclib's stream, which resets
                # the call, and that is how the server learns we have gone.
                for generator in (responses, *opened):
                    aclose = getattr(generator, "aclose", None)
                    if aclose is not None:
                        await aclose()

        async with self.loop.iterate(translated) as items:
            yield items

    async def call(
        self,
        path: str,
        request: bytes,
        decode: Callable[[bytes], Resp],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - bounds the call on this side
    ) -> Resp:
        """Call the unary method at ``path`` with an encoded request; ``decode`` reads the reply.

        The lean way for the calls made once per task: no generated stub, no
        generic codec (see :mod:`flame._wire`) and no grpclib (see
        :mod:`flame._http2`) in between. Errors are those of :meth:`unary`;
        ``timeout`` bounds the call on this side, without sending the server
        a deadline.
        """
        call = _path_call_name(path)
        self._check_open(call)
        task_calls = self._task_calls
        try:
            async with task_calls.deadline(timeout):
                reply = await _lean_unary(task_calls, path, request)
            return decode(reply)
        except Exception as exc:
            raise _grpc_failure(exc, call, self.endpoint, timeout) from None

    @contextlib.asynccontextmanager
    async def open_stream(
        self,
        path: str,
        request: bytes,
        decode: Callable[[bytes], Resp],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - bounds the stream on this side
    ) -> AsyncIterator[AsyncIterator[Resp]]:
        """Open the server stream at ``path`` with an encoded request; closed on exit.

        The lean counterpart of :meth:`stream`, as :meth:`call` is of
        :meth:`unary`. Leaving before the server has ended the stream resets
        it at once. ``timeout`` bounds the whole stream, on this side.
        """
        call = _path_call_name(path)
        self._check_open(call)
        task_calls = self._task_calls

        async def translated() -> AsyncGenerator[Resp, None]:
            # The deadline is applied to each wait, not around the loop: a
            # cancel scope must not stay open across a generator's yield.
            until = None if timeout is None else time.monotonic() + timeout
            try:
                for attempt in range(1, ATTEMPTS + 1):
                    yielded = False
                    try:
                        connection = await _before(task_calls, until, task_calls.get())
                        opened = await _before(task_calls, until, connection.open(path, request))
                        try:
                            while (
                                message := await _before(task_calls, until, opened.receive())
                            ) is not None:
                                yielded = True
                                yield decode(message)
                        finally:
                            # Before the server has ended it, this resets the
                            # stream: the server learns at once that we left.
                            opened.close()
                        return
                    except _http2.Unprocessed:
                        # Made again only if nothing of it has been seen.
                        if yielded or attempt == ATTEMPTS:
                            raise
                        await _pause_before_retry(connection, attempt, path)
            except Exception as exc:
                raise _grpc_failure(exc, call, self.endpoint, timeout) from None

        items = translated()
        try:
            yield items
        finally:
            with anyio.CancelScope(shield=True):
                await items.aclose()

    async def aclose(self) -> None:
        """Close the connection and stop the grpc loop; idempotent.

        Calls still in flight fail with FlameError(UNAVAILABLE). When this
        returns, the socket is closed and, under trio, the loop thread is gone.
        """
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self._task_calls.aclose()
            with contextlib.suppress(FlameError):
                await self.loop.run(_close_grpc, self.grpc)
            await self.loop.aclose()

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _call_unary(
    method: Callable[..., Awaitable[Resp]],
    request: Any,
    timeout: float | None,  # noqa: ASYNC109 - a gRPC deadline, sent to the server
) -> Resp:
    task = asyncio.current_task()
    cancelling = _cancelling(task)
    try:
        return await method(request, timeout=timeout)
    except (asyncio.TimeoutError, TimeoutError):
        _uncancel_deadline(task, cancelling)
        raise


class _FailAfter:
    """``anyio.fail_after`` as an async context manager, like ``asyncio.timeout``."""

    __slots__ = ("_scope",)

    def __init__(self, delay: float | None) -> None:
        self._scope = anyio.fail_after(delay)

    async def __aenter__(self) -> None:
        self._scope.__enter__()

    async def __aexit__(self, *exc: Any) -> bool | None:
        return self._scope.__exit__(*exc)


async def _before(task_calls: _TaskCallConnections, until: float | None, step: Awaitable[T]) -> T:
    """Await ``step``, failing with TimeoutError if ``time.monotonic()`` passes ``until``."""
    if until is None:
        return await step
    async with task_calls.deadline(max(0.0, until - time.monotonic())):
        return await step


#: How many times a call the server never processed is made (see
#: ``_http2.Unprocessed``): a cluster restarting, or shedding load with
#: REFUSED_STREAM, costs the call a retry rather than an error.
ATTEMPTS = 3

#: The pause before making again a call that a still working connection
#: refused (REFUSED_STREAM: the server sheds load), times 4 at each attempt.
#: A call the server did not take because the connection is going goes again
#: at once, on a new connection.
RETRY_PAUSE = 0.01


async def _pause_before_retry(connection: _http2.Connection, attempt: int, path: str) -> None:
    log.debug("%s was not processed; making it again (attempt %d)", path, attempt + 1)
    if connection.usable:
        await _sleep(RETRY_PAUSE * 4 ** (attempt - 1))


_sleep = anyio.sleep  # the tests watch the pauses here


async def _lean_unary(task_calls: _TaskCallConnections, path: str, request: bytes) -> bytes:
    for attempt in range(1, ATTEMPTS + 1):
        connection = await task_calls.get()
        try:
            opened = await connection.open(path, request)
            try:
                reply = await opened.receive()
                if reply is None:
                    raise grpclib.exceptions.ProtocolError("the server answered without a message")
                if await opened.receive() is not None:
                    raise grpclib.exceptions.ProtocolError(
                        "the server answered a unary call with more than one message"
                    )
            finally:
                opened.close()
        except _http2.Unprocessed:
            if attempt == ATTEMPTS:
                raise
            await _pause_before_retry(connection, attempt, path)
            continue
        return reply
    raise AssertionError("unreachable")  # pragma: no cover


#: How a client names itself to the cluster on the per-task calls.
USER_AGENT = "flame-sdk-python"


class _TaskCallConnections:
    """The lean connection (:mod:`flame._http2`) behind a channel's per-task calls.

    One connection at a time carries the calls; it is made when the channel
    connects, and again when it has been lost or the server has asked to
    close it (GOAWAY), so a cluster restart costs the calls in flight, not
    the channel. Everything here runs on the grpc loop.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        context: ssl.SSLContext | None,
        connect_timeout: float | None,
        backend: str,
    ) -> None:
        self.endpoint = endpoint
        self.context = context
        self.connect_timeout = connect_timeout
        self.backend = backend
        # The timeout of one call, as an async context manager. The timeout
        # is kept here rather than sent as a grpc-timeout header: its value
        # differs on every call, so HPACK would encode it anew each time, and
        # the server would arm a timer of its own, on calls that take a
        # millisecond. The server is not told; for these calls it has nothing
        # to abandon. Under asyncio its own timeout is one timer handle, a
        # quarter of the cost of an anyio cancel scope.
        self.deadline: Callable[[float | None], Any] = _FailAfter
        if sys.version_info >= (3, 11):
            if backend == "asyncio":
                self.deadline = asyncio.timeout
        self._current: _http2.Connection | None = None
        self._lock: anyio.Lock | None = None
        # Connections told to go away, still finishing their calls.
        self._leaving: set[_http2.Connection] = set()
        self._closed = False

    async def get(self) -> _http2.Connection:
        current = self._current
        if current is not None and current.usable:
            return current
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            current = self._current
            if current is not None and current.usable:
                return current
            if self._closed:
                raise grpclib.exceptions.StreamTerminatedError("the channel is closed")
            if current is not None and not current.lost.is_set():
                self._leaving.add(current)
            self._leaving = {c for c in self._leaving if not c.lost.is_set()}
            self._current = await self._connect()
            return self._current

    async def _connect(self) -> _http2.Connection:
        endpoint = self.endpoint
        authority = f"{endpoint.host}:{endpoint.port}"
        if ":" in endpoint.host:
            authority = f"[{endpoint.host}]:{endpoint.port}"
        settings: dict[str, Any] = {
            "scheme": "https" if self.context is not None else "http",
            "authority": authority,
            "user_agent": USER_AGENT,
            "max_message": MAX_MESSAGE_BYTES,
        }
        connection: _http2.Connection
        with anyio.fail_after(self.connect_timeout):
            if self.backend == "trio":
                connection = await self._connect_trio(settings)
            else:
                _, connection = await asyncio.get_running_loop().create_connection(
                    _http2.factory(**settings),
                    endpoint.host,
                    endpoint.port,
                    ssl=self.context,
                    server_hostname=endpoint.host if self.context is not None else None,
                )
        # Not waiting here for the server's SETTINGS: the first call does, so
        # that a silent endpoint costs that call's timeout, as with grpclib.
        return connection

    async def _connect_trio(self, settings: dict[str, Any]) -> _http2.Connection:
        import trio

        endpoint = self.endpoint
        stream: Any = await trio.open_tcp_stream(endpoint.host, endpoint.port)
        if self.context is not None:
            stream = trio.SSLStream(stream, self.context, server_hostname=endpoint.host)
            try:
                await stream.do_handshake()
            except BaseException as exc:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)
                # trio wraps the TLS failure; what it says is in the cause.
                if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
                    raise exc.__cause__ from None
                raise
        connection = _http2.TrioConnection(stream, **settings)
        connection.start()
        return connection

    async def aclose(self, bound: float = 5.0) -> None:
        """Close every connection and wait, at most ``bound`` s, for their sockets to close."""
        self._closed = True
        connections = {c for c in (self._current, *self._leaving) if c is not None}
        self._current = None
        self._leaving.clear()
        for connection in connections:
            connection.close()
        with anyio.move_on_after(bound):
            for connection in connections:
                await connection.lost.wait()


def _path_call_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _open_stub_stream(
    method: Callable[..., AsyncIterator[Resp]],
    request: Any,
    timeout: float | None,
) -> tuple[AsyncIterator[Resp], list[AsyncIterator[Any]]]:
    """Open a server stream with the generated stub ``method``.

    Returns the stub's generator and the list the generators it opens
    inside are recorded in. A generated stream method is an async generator
    that iterates another one (the stub's ``_unary_stream``, which holds
    grpclib's stream); closing the outer one does not close the inner one,
    which would then hold the call open until it is garbage collected. So
    the method runs on a shallow copy of its stub whose ``_unary_stream``
    records what it opens, for the caller to close.
    """
    stub = getattr(method, "__self__", None)
    function = getattr(method, "__func__", None)
    inner = getattr(stub, "_unary_stream", None)
    opened: list[AsyncIterator[Any]] = []
    if stub is None or function is None or inner is None:
        return method(request, timeout=timeout), opened
    tracked = copy.copy(stub)

    def recording(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        generator = inner(*args, **kwargs)
        opened.append(generator)
        return cast("AsyncIterator[Any]", generator)

    tracked._unary_stream = recording
    return function(tracked, request, timeout=timeout), opened


async def _close_grpc(channel: grpclib.client.Channel) -> None:
    if isinstance(channel, _GrpcChannel):
        await channel.close_and_wait()
    else:
        channel.close()
        await asyncio.sleep(0)


def _stub_call_name(method: Callable[..., Any]) -> str:
    name = getattr(method, "__name__", "call")
    return "".join(part.capitalize() for part in name.split("_"))


# --------------------------------------------------------------------------
# Servers


class Server(Generic[T]):
    """A running gRPC server; :attr:`port` and :attr:`address` say where."""

    def __init__(self, host: str, port: int, *, tls: bool = False) -> None:
        self.host = host
        self.port = port
        self.tls = tls

    @property
    def address(self) -> str:
        """The endpoint a client connects to: ``http://host:port`` (``https`` with TLS)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


@contextlib.asynccontextmanager
async def serve(
    loop: GrpcLoop,
    handlers: Sequence[Any],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl: ssl.SSLContext | None = None,
) -> AsyncIterator[Server[Any]]:
    """Serve the generated service ``handlers`` on ``host:port`` for the ``async with``.

    Port 0 takes a free port. With ``ssl`` (a server-side context holding the
    certificate), clients connect with TLS to ``https://``. Leaving closes the
    listening socket and every connection, and waits until the server has
    stopped, its handlers included.
    """
    context = ssl
    if context is not None:
        # gRPC is HTTP/2: a TLS peer must be offered h2 by ALPN.
        context.set_alpn_protocols(["h2"])

    async def run_server(*, task_status: anyio.abc.TaskStatus[Server[Any]]) -> None:
        server = _BatchingServer(list(handlers))
        try:
            await server.start(host, port, reuse_address=True, ssl=context)
        except OSError as exc:
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"cannot serve on {host}:{port}: {exc.strerror or exc}",
            ) from None
        try:
            sockets = getattr(server._server, "sockets", None) or ()
            bound = sockets[0].getsockname()[1] if sockets else port
            task_status.started(Server(host, bound, tls=context is not None))
            await asyncio.Event().wait()
        finally:
            server.close()
            with anyio.CancelScope(shield=True):
                await server.wait_closed()

    async with loop.background(run_server) as server:
        yield server


_reply_types: dict[Callable[[bytes], Any], type] = {}


def _reply_type(decode: Callable[[bytes], Any]) -> type:
    """A class grpclib's codec reads messages with: its ``FromString`` is ``decode``."""
    reply_type = _reply_types.get(decode)
    if reply_type is None:
        reply_type = type("_Reply", (), {"FromString": staticmethod(decode)})
        _reply_types[decode] = reply_type
    return reply_type


def unary_handler(
    fn: Callable[[Any], Awaitable[Any]], decode: Callable[[bytes], Any], reply_type: type
) -> Any:
    """A server handler for a unary method: ``decode`` reads the request, ``fn`` answers.

    For a service's ``__mapping__``, in place of the generated handler of a
    method called once per task: the request is read by ``decode`` (see
    :mod:`flame._wire`) rather than by the generic codec, and the reply (an
    instance of ``reply_type``) is sent as its ``SerializeToString`` gives it.
    Refusals are raised as with the generated handlers (:func:`refuse`).
    """

    async def handle(stream: Any) -> None:
        request = await _read_request(stream)
        await stream.send_message(await fn(request))

    return grpclib.const.Handler(handle, Cardinality.UNARY_UNARY, _reply_type(decode), reply_type)


def server_stream_handler(
    fn: Callable[[Any], AsyncIterator[Any]], decode: Callable[[bytes], Any], reply_type: type
) -> Any:
    """A server handler for a server-streaming method, as :func:`unary_handler` is for unary."""

    async def handle(stream: Any) -> None:
        request = await _read_request(stream)
        replies = fn(request)
        try:
            async for reply in replies:
                await stream.send_message(reply)
        finally:
            aclose = getattr(replies, "aclose", None)
            if aclose is not None:
                await aclose()

    return grpclib.const.Handler(handle, Cardinality.UNARY_STREAM, _reply_type(decode), reply_type)


async def _read_request(stream: Any) -> Any:
    # A decoder refuses bytes that are not its message with ValueError; left
    # to grpclib, that would be logged as a crash and answered "Internal
    # Server Error", blaming the server for the client's mistake.
    try:
        return await stream.recv_message()
    except ValueError as exc:
        raise grpclib.exceptions.GRPCError(
            Status.INVALID_ARGUMENT, f"the request cannot be read: {exc}"
        ) from None


def pid() -> int:
    """This process's id (a seam for tests of the service contract)."""
    return os.getpid()


def refuse(status: str, message: str) -> Exception:
    """An exception that fails the server call raising it with ``status`` and ``message``.

    ``status`` is a gRPC status name such as ``"INTERNAL"`` or
    ``"FAILED_PRECONDITION"``; handlers outside this module use it so that
    they need not know grpclib.
    """
    return grpclib.exceptions.GRPCError(Status[status], message)
