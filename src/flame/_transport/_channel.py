"""A client's calls to one gRPC endpoint, and the one place their failures become FlameErrors.

:class:`Channel` is what the rest of the SDK calls through:

* :meth:`Channel.call` and :meth:`Channel.open_stream` take an encoded
  request and a decoder (the hand-written codec of :mod:`flame._wire`, for
  the calls made once or more per task, or any message class's ``parse``);
* :meth:`Channel.request` is the small surface the generated stubs call on
  their channel, so ``pb.FrontendStub(channel)`` works unchanged on top of
  the same two methods; :meth:`Channel.unary` and :meth:`Channel.stream`
  call a bound stub method;
* :meth:`Channel.connect` opens the channel's pool (:mod:`._pool`) with the
  driver of the running backend, chosen here and nowhere else.

Every failure leaves this module as a :class:`~flame.FlameError` that names
the call, the endpoint and what went wrong (:func:`failure`).
"""

from __future__ import annotations

import contextlib
import copy
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio
import sniffio

from .._errors import FlameError, FlameErrorCode
from ._connection import Connection
from ._endpoint import Endpoint, os_reason, ssl_context, tls_advice
from ._limits import (
    MAX_MESSAGE_BYTES,
    Keepalive,
    check_message_limit,
    reply_limit,
    request_limit,
)
from ._pool import Deadline, Pool, RetryPolicy, ServerStream
from ._status import (
    CallFailed,
    ConnectionLost,
    ProtocolViolation,
    Status,
    code_for_status,
    is_v04_refusal,
)

__all__ = ["USER_AGENT", "Channel", "Stream", "StubCall", "failure"]

Resp = TypeVar("Resp")

#: How a client names itself to the cluster.
USER_AGENT = "flame-sdk-python"


def failure(
    exc: BaseException, call: str, endpoint: Endpoint, timeout: float | None = None
) -> FlameError:
    """What ``exc``, raised while making ``call``, means for the user.

    The order matters: ``TimeoutError`` and ``ssl.SSLError`` are both kinds of
    ``OSError``, and each deserves its own answer.
    """
    where = f"{call} on {endpoint}"
    if isinstance(exc, FlameError):
        return exc
    if isinstance(exc, CallFailed):
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
    if isinstance(exc, TimeoutError):
        within = f" within {timeout:g} s" if timeout is not None else " in time"
        return FlameError(FlameErrorCode.TIMEOUT, f"{where} did not finish{within}")
    if isinstance(exc, ConnectionLost):
        return FlameError(FlameErrorCode.UNAVAILABLE, f"{where} failed: {exc}")
    if isinstance(exc, ssl.SSLError):
        return FlameError(FlameErrorCode.INVALID_CONFIG, f"{where} failed: {tls_advice(exc)}")
    if isinstance(exc, OSError):
        return FlameError(
            FlameErrorCode.UNAVAILABLE,
            f"{where} failed: cannot reach the cluster ({os_reason(exc)})",
        )
    if isinstance(exc, ProtocolViolation):
        return FlameError(FlameErrorCode.INTERNAL, f"{where} failed: protocol error: {exc}")
    return FlameError(FlameErrorCode.INTERNAL, f"{where} failed: {type(exc).__name__}: {exc}")


def _call_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _method_call_name(method: Callable[..., Any]) -> str:
    name = getattr(method, "__name__", "call")
    return "".join(part.capitalize() for part in name.split("_"))


def _opener(
    endpoint: Endpoint,
    context: ssl.SSLContext | None,
    connect_timeout: float | None,
    **connection_settings: Any,
) -> tuple[Callable[[], Awaitable[Connection]], Deadline]:
    """How to open a connection to ``endpoint`` on the running backend, and bound a wait there."""
    library = sniffio.current_async_library()
    if library == "asyncio":
        from . import _asyncio as driver
    elif library == "trio":
        from . import _trio as driver  # type: ignore[no-redef]
    else:
        raise FlameError(
            FlameErrorCode.INVALID_CONFIG, f"flame runs under asyncio or trio, not {library!r}"
        )
    settings: dict[str, Any] = {
        "scheme": "https" if context is not None else "http",
        "authority": endpoint.authority,
        "user_agent": USER_AGENT,
        **connection_settings,
    }

    async def open_connection() -> Connection:
        advice = "is the cluster running, and is the address right?"
        try:
            with anyio.fail_after(connect_timeout):
                return await driver.connect(endpoint, context, **settings)
        except TimeoutError:
            raise FlameError(
                FlameErrorCode.UNAVAILABLE,
                f"cannot connect to {endpoint}: no answer within {connect_timeout:g} s; {advice}",
            ) from None
        except ssl.SSLError as exc:
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG, f"cannot connect to {endpoint}: {tls_advice(exc)}"
            ) from None
        except OSError as exc:
            raise FlameError(
                FlameErrorCode.UNAVAILABLE,
                f"cannot connect to {endpoint}: {os_reason(exc)}; {advice}",
            ) from None

    return open_connection, driver.deadline


class Channel:
    """The calls of a client to one gRPC endpoint, from asyncio or trio.

    Open it with :meth:`connect` and close it with :meth:`aclose` (or use it
    as an async context manager). Any number of calls may be in flight at
    once, from any tasks of the backend that connected it; they share one
    HTTP/2 connection.
    """

    def __init__(
        self, endpoint: Endpoint, pool: Pool, max_message_bytes: int = MAX_MESSAGE_BYTES
    ) -> None:
        # Use Channel.connect(); this is given an open pool.
        self.endpoint = endpoint
        self.pool = pool
        #: The largest data a message carries, and so the largest request sent.
        self.max_message_bytes = max_message_bytes
        self._max_request = request_limit(max_message_bytes)
        self._closed = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        ca_file: str | None = None,
        connect_timeout: float | None = 10.0,
        retry: RetryPolicy | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        keepalive: Keepalive | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Channel:
        """Connect to ``url``; raise FlameError if it cannot be reached in time.

        An ``https://`` endpoint uses TLS, trusting the system's CAs, or only
        the CA in ``ca_file`` when one is given. ``connect_timeout`` bounds
        each connection's opening (TCP and TLS); ``retry`` says how calls the
        server never processed are made again (:class:`RetryPolicy`).

        ``max_message_bytes`` is the largest data a message carries: a
        request larger than :func:`~._limits.request_limit` of it is refused
        before anything is sent, and replies are accepted up to
        :func:`~._limits.reply_limit` of it. ``keepalive`` pings a silent
        connection with calls in flight and gives it up when the PING goes
        unanswered (:class:`Keepalive`; None: never). ``headers`` are sent with
        every call (an ``authorization``, say), names in lower case.
        """
        endpoint = Endpoint.parse(url)
        max_message_bytes = check_message_limit(
            max_message_bytes, "max_message_bytes", FlameErrorCode.INVALID_ARGUMENT
        )
        if keepalive is not None and not isinstance(keepalive, Keepalive):
            raise FlameError(
                FlameErrorCode.INVALID_ARGUMENT,
                f"keepalive must be a Keepalive or None, not {type(keepalive).__name__}",
            )
        if ca_file is not None and not endpoint.tls:
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"a CA file was given for {url!r}, which is not https://; "
                "use an https:// endpoint, or drop the CA file",
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise FlameError(
                FlameErrorCode.INVALID_ARGUMENT,
                f"retry must be a RetryPolicy, not {type(retry).__name__}",
            )
        context = ssl_context(ca_file) if endpoint.tls else None
        open_connection, deadline = _opener(
            endpoint,
            context,
            connect_timeout,
            max_message=reply_limit(max_message_bytes),
            headers=tuple(headers),
            keepalive=keepalive,
        )
        pool = Pool(open_connection, deadline, retry or RetryPolicy())
        try:
            # Opened now, so that an endpoint that cannot be reached is said at once.
            await pool.connection()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await pool.aclose()
            raise
        return cls(endpoint, pool, max_message_bytes)

    def _check_open(self, call: str) -> None:
        if self._closed:
            raise FlameError(
                FlameErrorCode.INVALID_STATE,
                f"{call} on {self.endpoint}: the connection is closed; connect again",
            )

    def _too_large(self, call: str, size: int) -> FlameError:
        return FlameError(
            FlameErrorCode.INVALID_ARGUMENT,
            f"{call} on {self.endpoint}: the request is {size:,} bytes, over the "
            f"{self._max_request:,} this client sends ({self.max_message_bytes:,} bytes of "
            "data, max_message_bytes, and 64 KiB around it); nothing was sent. Send less "
            "(a task's input, a session's common data), or raise max_message_bytes here and "
            "on the cluster alike",
        )

    async def call(
        self,
        path: str,
        request: bytes,
        decode: Callable[[bytes], Resp],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline, sent to the server
    ) -> Resp:
        """Call the unary method at ``path`` with an encoded request; ``decode`` reads the reply.

        ``timeout`` goes to the server as the call's deadline and ends the
        call here when it passes (FlameError ``TIMEOUT``).
        """
        if self._closed:
            self._check_open(_call_name(path))
        if len(request) > self._max_request:
            raise self._too_large(_call_name(path), len(request))
        try:
            return decode(await self.pool.unary(path, request, timeout))
        except Exception as exc:
            raise failure(exc, _call_name(path), self.endpoint, timeout) from None

    def open_stream(
        self,
        path: str,
        request: bytes,
        decode: Callable[[bytes], Resp],
        *,
        timeout: float | None = None,
    ) -> Stream[Resp]:
        """Open the server stream at ``path`` with an encoded request; ``decode`` reads each.

        Use it as ``async with channel.open_stream(...) as messages:``;
        leaving before the server has ended the stream resets it at once.
        ``timeout`` bounds the whole stream, and goes to the server too.
        """
        self._check_open(_call_name(path))
        if len(request) > self._max_request:
            raise self._too_large(_call_name(path), len(request))
        return Stream(self, path, request, decode, timeout)

    def request(
        self,
        route: str,
        cardinality: Any,
        request_type: Any,
        response_type: Any,
        *,
        timeout: float | None = None,
        deadline: Any = None,
        metadata: Any = None,
    ) -> StubCall:
        """One call of a generated stub: what its code calls on its channel.

        Unary and server-streaming calls only, without metadata; the others
        are refused with FlameError ``INVALID_ARGUMENT``. ``deadline`` (an
        object with ``time_remaining()``) shortens ``timeout``.
        """
        call = _call_name(route)
        self._check_open(call)
        kind = str(getattr(cardinality, "name", cardinality))
        if kind not in ("UNARY_UNARY", "UNARY_STREAM"):
            raise FlameError(
                FlameErrorCode.INVALID_ARGUMENT,
                f"{call} on {self.endpoint} is a {kind} call; this client makes unary and "
                "server-streaming calls only",
            )
        if metadata:
            raise FlameError(
                FlameErrorCode.INVALID_ARGUMENT,
                f"{call} on {self.endpoint}: per-call metadata is not sent by this client; "
                "give the connection's headers to Channel.connect(headers=...) instead",
            )
        if deadline is not None:
            left = float(deadline.time_remaining())
            timeout = left if timeout is None else min(timeout, left)
        return StubCall(self, route, kind == "UNARY_STREAM", response_type.parse, timeout)

    async def unary(
        self,
        method: Callable[..., Awaitable[Resp]],
        request: Any,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline, sent to the server
    ) -> Resp:
        """Call ``method``, a generated stub's method bound to this channel, with ``request``."""
        return await method(request, timeout=timeout)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: Callable[..., AsyncIterator[Resp]],
        request: Any,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline, sent to the server
    ) -> AsyncIterator[AsyncIterator[Resp]]:
        """Open the server stream of ``method``, a bound stub method; closed on exit.

        ``timeout`` bounds the whole stream, not each message.
        """
        self._check_open(_method_call_name(method))
        replies, opened = _open_stub_stream(method, request, timeout)
        try:
            yield replies
        finally:
            # Closed now, not when they are collected: closing the innermost
            # leaves our StubCall, which resets the call.
            with anyio.CancelScope(shield=True):
                for generator in (replies, *opened):
                    aclose = getattr(generator, "aclose", None)
                    if aclose is not None:
                        await aclose()

    async def aclose(self) -> None:
        """Close the channel; idempotent.

        Calls still in flight fail with FlameError(UNAVAILABLE). When this
        returns, the sockets are closed (a TLS connection has said
        close_notify).
        """
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self.pool.aclose()

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Stream(Generic[Resp]):
    """The decoded messages of one server-streaming call.

    An async iterator, and an async context manager that closes the call on
    exit; :meth:`close` does the same at once, from plain code. Failures are
    raised as FlameErrors, after which the iteration is over.
    """

    __slots__ = ("_channel", "_decode", "_done", "_messages", "_name", "_timeout")

    def __init__(
        self,
        channel: Channel,
        path: str,
        request: bytes,
        decode: Callable[[bytes], Resp],
        timeout: float | None,
    ) -> None:
        self._channel = channel
        self._name = _call_name(path)
        self._decode = decode
        self._timeout = timeout
        self._messages: ServerStream = channel.pool.stream(path, request, timeout)
        self._done = False

    def __aiter__(self) -> Stream[Resp]:
        return self

    async def __anext__(self) -> Resp:
        if self._done:
            raise StopAsyncIteration
        try:
            message = await self._messages.receive()
            if message is not None:
                return self._decode(message)
        except Exception as exc:
            self.close()
            raise failure(exc, self._name, self._channel.endpoint, self._timeout) from None
        self._done = True
        raise StopAsyncIteration

    def close(self) -> None:
        """End the call now: before the server has ended it, its stream is reset."""
        self._done = True
        self._messages.close()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Stream[Resp]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class StubCall:
    """One call of a generated stub, with the stream methods its code calls.

    The stub sends its one request with ``send_message(request, end=True)``
    and reads with ``recv_message()`` (unary) or ``async for`` (a server
    stream); the call is made through :meth:`Channel.call` or
    :meth:`Channel.open_stream` when the first reply is asked for.
    """

    def __init__(
        self,
        channel: Channel,
        route: str,
        streaming: bool,
        decode: Callable[[bytes], Any],
        timeout: float | None,
    ) -> None:
        self._channel = channel
        self._route = route
        self._streaming = streaming
        self._decode = decode
        self._timeout = timeout
        self._request: bytes | None = None
        self._answered = False
        self._stream: Stream[Any] | None = None

    async def __aenter__(self) -> StubCall:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._stream is not None:
            self._stream.close()

    async def send_message(self, message: Any, *, end: bool = False) -> None:
        if not end or self._request is not None:
            raise FlameError(
                FlameErrorCode.INVALID_ARGUMENT,
                f"{_call_name(self._route)} on {self._channel.endpoint}: this client sends "
                "one request message per call",
            )
        self._request = bytes(message)

    async def recv_message(self) -> Any:
        """The next reply; None once there is no more."""
        request = self._request
        if request is None:
            raise FlameError(
                FlameErrorCode.INVALID_ARGUMENT,
                f"{_call_name(self._route)} on {self._channel.endpoint}: a reply was asked "
                "for before the request was sent",
            )
        if not self._streaming:
            if self._answered:
                return None
            self._answered = True
            return await self._channel.call(
                self._route, request, self._decode, timeout=self._timeout
            )
        if self._stream is None:
            self._stream = self._channel.open_stream(
                self._route, request, self._decode, timeout=self._timeout
            )
        try:
            return await self._stream.__anext__()
        except StopAsyncIteration:
            return None

    def __aiter__(self) -> StubCall:
        return self

    async def __anext__(self) -> Any:
        message = await self.recv_message()
        if message is None:
            raise StopAsyncIteration
        return message


def _open_stub_stream(
    method: Callable[..., AsyncIterator[Resp]],
    request: Any,
    timeout: float | None,
) -> tuple[AsyncIterator[Resp], list[AsyncIterator[Any]]]:
    """Open a server stream with the generated stub ``method``.

    Returns the stub's generator and the list the generators it opens
    inside are recorded in. A generated stream method is an async generator
    that iterates another one (the stub's ``_unary_stream``, which holds our
    :class:`StubCall`); closing the outer one does not close the inner one,
    which would then hold the call open until it is collected. So the method
    runs on a shallow copy of its stub whose ``_unary_stream`` records what
    it opens, for the caller to close.
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
        return generator  # type: ignore[no-any-return]

    tracked._unary_stream = recording
    return function(tracked, request, timeout=timeout), opened
