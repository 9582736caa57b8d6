"""The client's HTTP/2 connection (flame._transport) against servers unlike our own.

Our grpclib server always answers the same well-behaved way. Here a scripted
h2 server (:mod:`_h2_server`) answers each request as the test says: odd
framings, trailers-only replies, HTTP errors, resets, small windows, stream
limits, CONTINUATION and padding, pings, GOAWAY, dropped connections, and
HPACK dynamic-table use. Every call goes through the public Channel.call and
Channel.open_stream, so what is checked is the FlameError a user would get.

The server runs on the test's backend; requests, not accepted sockets,
tell which connection carried a call.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import h2.errors
import h2.settings
import hpack
import pytest
from _h2_server import (
    GRPC_HEADERS,
    Request,
    ScriptedServer,
    ServerConnection,
    grpc,
    scripted,
)
from hyperframe.frame import ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame
from transport_helpers import wait_until

from flame import FlameError, FlameErrorCode
from flame._transport import MAX_MESSAGE_BYTES, Channel, RetryPolicy, _frames, _pool, reply_limit
from flame._transport._connection import Connection

GET = "/flame.Frontend/GetTask"
WATCH = "/flame.Frontend/WatchTask"

#: A hang guard for a whole test, not a timing assertion.
BOUND = 5.0

Settings = h2.settings.SettingCodes
Errors = h2.errors.ErrorCodes

#: The largest reply a client with the default limit accepts.
REPLY_LIMIT = reply_limit(MAX_MESSAGE_BYTES)


def tagged(raw: bytes) -> tuple[str, bytes]:
    """A decoder whose output shows it was applied."""
    return ("decoded", raw)


@contextlib.asynccontextmanager
async def serving(
    handler: Callable[[Request], Awaitable[None]] | None = None, **options: Any
) -> AsyncIterator[tuple[ScriptedServer, Channel]]:
    """A scripted server and a Channel to it, both closed on exit, within BOUND.

    On a clean exit, no connection may have broken HTTP/2's rules as h2 reads
    them (windows, stream limits, header validity): a test expecting that
    looks at ``server.protocol_errors`` itself.
    """
    with anyio.fail_after(BOUND):
        async with scripted(handler, **options) as server:
            async with await Channel.connect(server.url, connect_timeout=BOUND) as channel:
                yield server, channel
            assert server.protocol_errors == []


def lean(channel: Channel) -> Connection:
    current = channel.pool.current
    assert current is not None
    return current


async def outcome(call: Awaitable[Any]) -> Any:
    """What ``call`` returned, or the FlameError it raised."""
    try:
        return await call
    except FlameError as exc:
        return exc


async def call(channel: Channel, request: bytes = b"ping", **kw: Any) -> Any:
    return await channel.call(GET, request, tagged, **kw)


async def watch(channel: Channel, request: bytes = b"ping") -> list[Any]:
    """The messages of a stream, then the FlameError that ended it if any."""
    seen: list[Any] = []
    try:
        async with channel.open_stream(WATCH, request, tagged) as items:
            async for item in items:
                seen.append(item)
    except FlameError as exc:
        seen.append(exc)
    return seen


async def echo(request: Request) -> None:
    await request.reply(b"echo:" + request.message)


async def check_still_usable(server: ScriptedServer, channel: Channel) -> ServerConnection:
    """One more call works on the same channel; the connection it went over."""
    assert await call(channel, b"again") == ("decoded", b"echo:again")
    return server.requests[-1].connection


# --------------------------------------------------------------------------
# Replies that work


async def test_a_unary_call_sends_a_grpc_request_and_decodes_the_one_reply() -> None:
    async with serving(echo) as (server, channel):
        assert await call(channel, b"ping") == ("decoded", b"echo:ping")
    (request,) = server.requests
    assert request.headers[":method"] == "POST"
    assert request.headers[":scheme"] == "http"
    assert request.headers[":path"] == GET
    assert request.headers[":authority"] == f"127.0.0.1:{server.port}"
    assert request.headers["content-type"] == "application/grpc"
    assert request.headers["te"] == "trailers"
    assert bytes(request.body) == b"\x00\x00\x00\x00\x04ping"


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


STREAMED = [b"one", b"", b"three", b"x" * 100, b"last"]
_WIRE = b"".join(grpc(m) for m in STREAMED)


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param([_WIRE], id="all-in-one-frame"),
        pytest.param(_cut(_WIRE, list(range(1, len(_WIRE)))), id="byte-by-byte"),
        # A prefix split 2+3, a message over three frames, a frame holding
        # the end of one message, a whole one and the start of the next.
        pytest.param(_cut(_WIRE, [2, 5, 9, 14, 30, 60, 140]), id="mixed"),
    ],
)
async def test_a_stream_yields_every_message_in_order_however_framed(
    frames: list[bytes],
) -> None:
    async def handler(request: Request) -> None:
        await request.respond([(":status", "200"), ("content-type", "application/grpc+proto")])
        for piece in frames:
            await request.send(piece)
        await request.finish()

    async with serving(handler) as (server, channel):
        assert await watch(channel) == [("decoded", m) for m in STREAMED]
    (request,) = server.requests
    assert request.headers[":path"] == WATCH


# --------------------------------------------------------------------------
# Replies that fail: statuses


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (5, FlameErrorCode.NOT_FOUND),
        (12, FlameErrorCode.UNIMPLEMENTED),
        (14, FlameErrorCode.UNAVAILABLE),
        (4, FlameErrorCode.TIMEOUT),
        (9, FlameErrorCode.INVALID_STATE),
        (2, FlameErrorCode.INTERNAL),  # UNKNOWN with a reason: the server failed
    ],
)
async def test_a_trailers_only_reply_fails_with_its_status_and_decoded_message(
    status: int, code: FlameErrorCode
) -> None:
    async def handler(request: Request) -> None:
        await request.respond(
            [
                *GRPC_HEADERS,
                ("grpc-status", str(status)),
                ("grpc-message", "task%2042%20is%20gone%3A%20d%C3%A9j%C3%A0%20vu%25"),
            ],
            end_stream=True,
        )

    async with serving(handler) as (server, channel):
        with pytest.raises(FlameError) as raised:
            await call(channel)
        streamed = await watch(channel)
        assert server.requests[-1].connection is server.requests[0].connection
    assert raised.value.code is code
    assert "task 42 is gone: déjà vu%" in raised.value.message
    assert "GetTask" in raised.value.message
    (error,) = streamed
    assert isinstance(error, FlameError)
    assert error.code is code
    assert "task 42 is gone: déjà vu%" in error.message


async def test_a_stream_failing_after_messages_yields_them_then_its_error() -> None:
    async def handler(request: Request) -> None:
        await request.respond()
        await request.send_messages(b"a", b"b")
        await request.finish(5, "session 3 is gone")

    async with serving(handler) as (_, channel):
        *items, error = await watch(channel)
    assert items == [("decoded", b"a"), ("decoded", b"b")]
    assert isinstance(error, FlameError)
    assert error.code is FlameErrorCode.NOT_FOUND
    assert "session 3 is gone" in error.message


async def test_a_non_numeric_grpc_status_is_unknown_not_a_crash() -> None:
    async def handler(request: Request) -> None:
        await request.respond([*GRPC_HEADERS, ("grpc-status", "teapot")], end_stream=True)

    async with serving(handler) as (_, channel):
        with pytest.raises(FlameError) as raised:
            await call(channel)
    # UNKNOWN without a message reads as a v0.4 refusal.
    assert raised.value.code is FlameErrorCode.INVALID_STATE
    assert "UNKNOWN" in raised.value.message


@pytest.mark.parametrize(
    ("http_status", "code"),
    [
        ("404", FlameErrorCode.UNIMPLEMENTED),
        ("503", FlameErrorCode.UNAVAILABLE),
        ("401", FlameErrorCode.INVALID_CONFIG),
        ("500", FlameErrorCode.INTERNAL),
    ],
)
@pytest.mark.parametrize("with_body", [True, False], ids=["with-body", "headers-only"])
async def test_an_http_error_status_maps_onto_its_grpc_status(
    http_status: str, code: FlameErrorCode, with_body: bool
) -> None:
    async def handler(request: Request) -> None:
        if request.message == b"again":
            await echo(request)
            return
        headers = [(":status", http_status), ("content-type", "text/plain")]
        await request.respond(headers, end_stream=not with_body)
        if with_body:
            await request.send(b"no such thing here", end_stream=True)

    async with serving(handler) as (server, channel):
        with pytest.raises(FlameError) as raised:
            await call(channel)
        assert await check_still_usable(server, channel) is server.requests[0].connection
    assert raised.value.code is code
    assert f"HTTP status {http_status}" in raised.value.message


async def test_a_reply_that_is_not_grpc_names_its_content_type() -> None:
    async def handler(request: Request) -> None:
        if request.message == b"again":
            await echo(request)
            return
        await request.respond([(":status", "200"), ("content-type", "text/html; charset=utf-8")])
        # The page is held back: the client must give up on the headers alone.
        await request.wait_reset()

    async with serving(handler) as (server, channel):
        with pytest.raises(FlameError) as raised:
            await call(channel)
        assert await check_still_usable(server, channel) is server.requests[0].connection
    assert raised.value.code is FlameErrorCode.INTERNAL
    assert "'text/html; charset=utf-8'" in raised.value.message
    assert server.requests[0].reset_code == Errors.CANCEL


# --------------------------------------------------------------------------
# Replies that fail: endings and messages


async def _no_status(request: Request) -> None:
    await request.respond()
    await request.send_messages(b"reply")
    await request.finish(None, extra=[("x-note", "forgot the status")])


async def _data_ends_the_stream(request: Request) -> None:
    await request.respond()
    await request.send(grpc(b"reply"), end_stream=True)


async def _headers_then_empty_end(request: Request) -> None:
    await request.respond()
    await request.send(b"", end_stream=True)


async def _ends_inside_a_message(request: Request) -> None:
    await request.respond()
    await request.send(grpc(b"reply")[:4])
    await request.finish(0)


async def _no_message(request: Request) -> None:
    await request.respond()
    await request.finish(0)


async def _two_messages(request: Request) -> None:
    await request.reply(b"one", b"two")


async def _headers_twice(request: Request) -> None:
    await request.respond()
    await request.send_messages(b"reply")
    # h2 will not send a second block without END_STREAM; the bytes can.
    await request.connection.send_raw(
        lambda: [
            HeadersFrame(
                request.stream_id,
                request.h2.encoder.encode([("x-more", "headers")]),
                flags=["END_HEADERS"],
            )
        ]
    )


@pytest.mark.parametrize(
    ("script", "said"),
    [
        (_no_status, "without a status"),
        (_data_ends_the_stream, "without trailers"),
        (_headers_then_empty_end, "without trailers"),
        (_ends_inside_a_message, "inside a message"),
        (_no_message, "without a message"),
        (_two_messages, "more than one message"),
        (_headers_twice, "second header block"),
    ],
)
async def test_a_reply_ended_wrongly_is_an_error_not_a_hang(
    script: Callable[[Request], Awaitable[None]], said: str
) -> None:
    async def handler(request: Request) -> None:
        await (echo if request.message == b"again" else script)(request)

    async with serving(handler) as (server, channel):
        with pytest.raises(FlameError) as raised:
            await call(channel)
        assert await check_still_usable(server, channel) is server.requests[0].connection
    assert raised.value.code is FlameErrorCode.INTERNAL
    assert said in raised.value.message


async def test_a_compressed_message_is_refused_and_its_stream_reset() -> None:
    async def handler(request: Request) -> None:
        if request.message == b"again":
            await echo(request)
            return
        await request.respond([*GRPC_HEADERS, ("grpc-encoding", "gzip")])
        await request.send(grpc(b"\x1f\x8b not really gzip", flag=1))
        await request.wait_reset()

    async with serving(handler) as (server, channel):
        with pytest.raises(FlameError) as raised:
            await call(channel)
        assert await server.requests[0].wait_reset() == Errors.CANCEL
        assert await check_still_usable(server, channel) is server.requests[0].connection
    assert raised.value.code is FlameErrorCode.INTERNAL
    assert "compressed" in raised.value.message


async def test_a_message_over_the_limit_is_refused_from_its_prefix_alone() -> None:
    async def handler(request: Request) -> None:
        if request.message == b"again":
            await echo(request)
            return
        await request.respond()
        # Only the prefix and a little: the client must not wait for the rest.
        await request.send(grpc(b"x" * 100, length=REPLY_LIMIT + 1))
        await request.wait_reset()

    async with serving(handler) as (server, channel):
        with pytest.raises(FlameError) as raised:
            await call(channel)
        assert await server.requests[0].wait_reset() == Errors.CANCEL
        assert await check_still_usable(server, channel) is server.requests[0].connection
    # _errors maps RESOURCE_EXHAUSTED onto INVALID_ARGUMENT.
    assert raised.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert "RESOURCE_EXHAUSTED" in raised.value.message
    assert f"{REPLY_LIMIT + 1:,} bytes" in raised.value.message


# --------------------------------------------------------------------------
# Resets from the server


@pytest.mark.parametrize(
    ("reset", "code"),
    [
        (Errors.REFUSED_STREAM, FlameErrorCode.UNAVAILABLE),
        (Errors.CANCEL, FlameErrorCode.UNAVAILABLE),  # CANCELLED
        (Errors.ENHANCE_YOUR_CALM, FlameErrorCode.INVALID_ARGUMENT),  # RESOURCE_EXHAUSTED
        (Errors.INADEQUATE_SECURITY, FlameErrorCode.INVALID_CONFIG),  # PERMISSION_DENIED
        (Errors.INTERNAL_ERROR, FlameErrorCode.INTERNAL),
    ],
)
async def test_a_stream_reset_by_the_server_fails_only_that_call(
    reset: Errors, code: FlameErrorCode
) -> None:
    async def handler(request: Request) -> None:
        message = request.message
        if message == b"again":
            await echo(request)
            return
        if message == b"mid-stream":
            await request.respond()
            await request.send_messages(b"first")
        await request.reset(reset)

    async with serving(handler) as (server, channel):
        with pytest.raises(FlameError) as raised:
            await call(channel, b"before-headers")
        first, error = await watch(channel, b"mid-stream")
        assert await check_still_usable(server, channel) is server.requests[0].connection
    assert raised.value.code is code
    assert reset.name in raised.value.message
    assert first == ("decoded", b"first")
    assert isinstance(error, FlameError)
    assert error.code is code


# --------------------------------------------------------------------------
# Flow control


async def test_a_large_request_is_sent_within_a_small_window() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB

    async def handler(request: Request) -> None:
        await request.reply(str(len(request.message)).encode())

    # h2 raises (and the server records) any DATA beyond the window it gave.
    small = {Settings.INITIAL_WINDOW_SIZE: 1024}
    async with serving(handler, settings=small) as (server, channel):
        assert await call(channel, payload) == ("decoded", b"1048576")
    (request,) = server.requests
    assert request.message == payload
    assert request.largest_frame <= 1024
    assert request.data_frames >= len(payload) // 1024


async def test_a_request_goes_in_frames_as_large_as_the_server_allows() -> None:
    payload = bytes(range(256)) * 800  # 200 KiB
    large = {Settings.MAX_FRAME_SIZE: 1 << 16, Settings.INITIAL_WINDOW_SIZE: 1 << 20}

    async def handler(request: Request) -> None:
        await request.reply(b"ok")

    # h2 raises (and the server records) any frame over the size it allows.
    async with serving(handler, settings=large) as (server, channel):
        assert await call(channel, payload) == ("decoded", b"ok")
    (request,) = server.requests
    assert request.message == payload
    assert request.largest_frame > _frames.DEFAULT_FRAME_SIZE
    assert request.data_frames < len(payload) // _frames.DEFAULT_FRAME_SIZE


async def test_a_request_held_by_a_zero_window_goes_once_settings_open_it() -> None:
    payload = b"held back" * 100

    async def handler(request: Request) -> None:
        await request.reply(request.message[:9])

    closed = {Settings.INITIAL_WINDOW_SIZE: 0}
    async with serving(handler, settings=closed) as (server, channel):
        async with anyio.create_task_group() as tg:
            results: list[Any] = []

            async def one() -> None:
                results.append(await call(channel, payload))

            tg.start_soon(one)
            await server.wait_for(lambda: bool(server.opened))
            (request,) = server.opened
            connection = request.connection
            connection.h2.update_settings({Settings.INITIAL_WINDOW_SIZE: 65_535})
            await connection.flush()
        assert results == [("decoded", b"held back")]
    assert request.message == payload


async def test_large_replies_arrive_whole_as_the_client_gives_window_back() -> None:
    # One reply of the largest size accepted, then a stream longer than the
    # client's whole connection window: the server's h2 sends nothing past a
    # window, so both finish only if the client hands credit back.
    largest = bytes(range(251)) * (REPLY_LIMIT // 251) + b"z" * (REPLY_LIMIT % 251)
    assert len(largest) == REPLY_LIMIT
    chunks = [bytes([i]) * (1 << 20) for i in range(_frames.CONNECTION_WINDOW // (1 << 20) + 1)]

    async def handler(request: Request) -> None:
        if request.message == b"largest":
            await request.reply(largest)
        else:
            await request.reply(*chunks)

    async with serving(handler) as (server, channel):
        assert await call(channel, b"largest") == ("decoded", largest)
        assert await watch(channel, b"chunks") == [("decoded", c) for c in chunks]
        connection = server.requests[0].connection
    stream_updates = {
        r.stream_id: connection.window_updates.get(r.stream_id, 0) for r in server.requests
    }
    assert all(count >= 1 for count in stream_updates.values()), stream_updates
    # The first is the client's opening update, that sets its 16 MiB window.
    assert connection.window_updates[0] >= 2


async def test_a_stream_left_unread_holds_the_server_back_and_loses_nothing() -> None:
    # 48 messages of 64 KiB: three times the stream's window. While the
    # caller reads nothing, the client must stop giving window back, so the
    # server stalls instead of the messages piling up in the client.
    size = 64 * 1024
    chunks = [bytes([i]) * size for i in range(48)]
    sent: list[int] = []

    async def handler(request: Request) -> None:
        await request.respond()
        for i, chunk in enumerate(chunks):
            await request.send(grpc(chunk))
            sent.append(i)
        await request.finish()

    async with serving(handler) as (server, channel):
        async with channel.open_stream(WATCH, b"many", tagged) as items:
            assert await items.__anext__() == ("decoded", chunks[0])
            (request,) = server.opened

            def stalled() -> bool:
                return request.h2.local_flow_control_window(request.stream_id) <= 0

            # Polled: the server stalls inside a send, which says nothing.
            await wait_until(stalled, "the server running out of window")
            # Held to the window plus the half the client may still credit
            # while the caller is behind by less than half a window.
            limit = _frames.STREAM_WINDOW + _frames.CREDIT_STEP
            assert len(sent) * size <= limit + size
            assert len(sent) < len(chunks)
            rest = [item async for item in items]
        assert rest == [("decoded", c) for c in chunks[1:]]


# --------------------------------------------------------------------------
# Stream limits


@pytest.mark.parametrize("calls_first", [False, True], ids=["settings-first", "calls-first"])
async def test_the_servers_stream_limit_is_never_exceeded(
    monkeypatch: pytest.MonkeyPatch, calls_first: bool
) -> None:
    many = 10
    total = many if calls_first else many + 1  # with the warm-up call
    hold = anyio.Event() if calls_first else None
    waiting_for_settings: list[object] = []
    ready = Connection.ready

    async def counted_ready(self: Connection) -> None:
        waiting_for_settings.append(self)
        await ready(self)

    monkeypatch.setattr(Connection, "ready", counted_ready)

    async def handler(request: Request) -> None:
        if request.message == b"warm-up":
            await echo(request)
            return
        server = request.connection.server
        h2_connection = request.connection.h2
        # Answer only with the streams the limit allows all open at once, so
        # that the client, if it would open more, has the time to.
        await server.wait_for(
            lambda: h2_connection.open_inbound_streams >= 2 or len(server.opened) == total
        )
        await echo(request)

    async with serving(
        handler, settings={Settings.MAX_CONCURRENT_STREAMS: 2}, hold_settings=hold
    ) as (server, channel):
        if hold is None:
            await call(channel, b"warm-up")
        results: dict[int, Any] = {}

        async def one(i: int) -> None:
            results[i] = await outcome(call(channel, str(i).encode()))

        async with anyio.create_task_group() as tg:
            for i in range(many):
                tg.start_soon(one, i)
            if hold is not None:
                # All of them wait for the server's first SETTINGS, and so do
                # not know its limit yet when they start.
                await wait_until(
                    lambda: len(waiting_for_settings) == many, "every call waiting", BOUND
                )
                hold.set()
        assert results == {i: ("decoded", f"echo:{i}".encode()) for i in range(many)}
        (connection,) = {r.connection for r in server.requests}
    assert connection.most_open == 2


# --------------------------------------------------------------------------
# Framing: CONTINUATION and padding


def _pieces(block: bytes, size: int) -> list[bytes]:
    return [block[i : i + size] for i in range(0, len(block), size)]


def _header_frames(
    stream_id: int, block: bytes, size: int, first_flags: list[str], **first: Any
) -> list[Any]:
    """A header block as a HEADERS frame and CONTINUATION frames of ``size`` bytes."""
    head, *rest = _pieces(block, size)
    assert rest, "the block must need CONTINUATION frames"
    frames: list[Any] = [HeadersFrame(stream_id, head, flags=first_flags, **first)]
    frames += [ContinuationFrame(stream_id, piece) for piece in rest[:-1]]
    frames.append(ContinuationFrame(stream_id, rest[-1], flags=["END_HEADERS"]))
    return frames


async def test_header_blocks_over_continuation_frames_and_padded_frames_are_read() -> None:
    message = b"over several padded frames"
    wire = grpc(message)

    async def raw_reply(request: Request) -> None:
        stream_id = request.stream_id
        encoder = request.h2.encoder

        def frames() -> list[Any]:
            # Encoded here, under the send lock, by h2's own encoder: the
            # dynamic table the client keeps must follow these blocks too.
            head = encoder.encode([*GRPC_HEADERS, ("x-filler", "h" * 60)])
            tail = encoder.encode([("grpc-status", "0"), ("x-filler", "t" * 60)])
            return [
                *_header_frames(
                    stream_id,
                    head,
                    7,
                    ["PADDED", "PRIORITY"],
                    pad_length=9,
                    depends_on=0,
                    stream_weight=200,
                ),
                DataFrame(stream_id, wire[:3], flags=["PADDED"], pad_length=20),
                DataFrame(stream_id, b"", flags=["PADDED"], pad_length=255),
                DataFrame(stream_id, wire[3:12], flags=["PADDED"], pad_length=0),
                DataFrame(stream_id, wire[12:]),
                *_header_frames(stream_id, tail, 5, ["END_STREAM", "PADDED"], pad_length=3),
            ]

        await request.connection.send_raw(frames)

    async def handler(request: Request) -> None:
        if request.message == b"raw":
            await raw_reply(request)
        elif request.message == b"long header":
            # Longer than a frame: h2 itself sends HEADERS and CONTINUATION.
            await request.respond([*GRPC_HEADERS, ("x-long", "l" * 30_000)])
            await request.send_messages(b"long")
            await request.finish()
        else:
            await request.respond()
            await request.send_frame(grpc(b"padded by h2"), pad_length=100)
            await request.finish()

    async with serving(handler) as (server, channel):
        assert await watch(channel, b"raw") == [("decoded", message)]
        assert await call(channel, b"long header") == ("decoded", b"long")
        # Through h2 again, with its encoder's table as the raw blocks left it.
        assert await call(channel, b"h2") == ("decoded", b"padded by h2")
        (connection,) = {r.connection for r in server.requests}
    assert connection.h2.encoder.header_table.dynamic_entries, "no dynamic table was used"


async def test_a_header_block_left_unfinished_fails_the_connection_not_the_channel() -> None:
    async def handler(request: Request) -> None:
        if request.message == b"again":
            await echo(request)
            return

        def frames() -> list[Any]:
            block = request.h2.encoder.encode(GRPC_HEADERS)
            # No END_HEADERS, and then not a CONTINUATION frame.
            return [HeadersFrame(request.stream_id, block[:1]), DataFrame(request.stream_id, b"")]

        await request.connection.send_raw(frames)

    async with serving(handler) as (server, channel):
        with pytest.raises(FlameError) as raised:
            await call(channel)
        first = server.requests[0].connection
        await first.server.wait_for(lambda: first.closed)
        assert await check_still_usable(server, channel) is not first
    assert raised.value.code is FlameErrorCode.INTERNAL
    assert "a header block was left unfinished" in raised.value.message
    assert first.terminated is not None
    assert first.terminated.error_code == Errors.PROTOCOL_ERROR


# --------------------------------------------------------------------------
# Pings and GOAWAY


async def test_a_ping_is_answered_with_its_own_payload_during_a_call_and_idle() -> None:
    async def handler(request: Request) -> None:
        if request.message == b"again":
            await echo(request)
            return
        connection = request.connection
        await request.respond()
        await connection.ping(b"mid-call")
        # The reply waits for the answer: the client answers while it waits.
        await connection.server.wait_for(lambda: b"mid-call" in connection.ping_acks)
        await request.send_messages(b"after the ping")
        await request.finish()

    async with serving(handler) as (server, channel):
        assert await call(channel) == ("decoded", b"after the ping")
        connection = server.requests[0].connection
        idle = b"\x00idle\xff\x01\x02"
        await connection.ping(idle)
        # A connection nobody waits on (under trio) reads the ping when it
        # is used next, before the call goes out.
        await check_still_usable(server, channel)
        await server.wait_for(lambda: len(connection.ping_acks) == 2)
    assert connection.ping_acks == [b"mid-call", idle]


async def test_goaway_remakes_only_the_calls_the_server_did_not_take(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[float] = []

    async def recorded_sleep(delay: float) -> None:
        pauses.append(delay)

    monkeypatch.setattr(_pool, "_sleep", recorded_sleep)
    release = anyio.Event()
    first: list[ServerConnection] = []

    async def handler(request: Request) -> None:
        first.append(request.connection)
        if request.message == b"taken":
            await release.wait()
            await echo(request)
        elif request.connection is first[0]:
            await anyio.sleep_forever()  # held until the GOAWAY
        else:
            await echo(request)

    async with serving(handler) as (server, channel):
        results: dict[bytes, Any] = {}
        not_taken_done = anyio.Event()

        async def one(name: bytes) -> None:
            results[name] = await outcome(call(channel, name))
            if name == b"not taken":
                not_taken_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, b"taken")
            await server.wait_for(lambda: len(server.requests) == 1)
            tg.start_soon(one, b"not taken")
            await server.wait_for(lambda: len(server.requests) == 2)
            taken, not_taken = server.requests
            assert (taken.stream_id, not_taken.stream_id) == (1, 3)
            old = taken.connection
            goaway = GoAwayFrame(
                0, last_stream_id=taken.stream_id, error_code=0, additional_data=b"restarting"
            )
            await old.send_raw(lambda: [goaway])
            # Made again at once on a new connection, while the taken call is
            # still held on the old one.
            await not_taken_done.wait()
            assert b"taken" not in results
            release.set()
        # The last call over, the client closes the connection it was told to leave.
        await server.wait_for(lambda: old.closed)
    assert results == {
        b"taken": ("decoded", b"echo:taken"),
        b"not taken": ("decoded", b"echo:not taken"),
    }
    remade = server.requests[2]
    assert remade.message == b"not taken"
    assert remade.connection is not old
    assert pauses == []  # a new connection is tried at once


async def test_a_call_refused_before_processing_is_made_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refusals = {b"once": 1, b"always": RetryPolicy().attempts}
    seen: dict[bytes, int] = {}
    pauses: list[float] = []

    async def recorded_sleep(delay: float) -> None:
        pauses.append(delay)
        await anyio.lowlevel.checkpoint()

    monkeypatch.setattr(_pool, "_sleep", recorded_sleep)

    async def handler(request: Request) -> None:
        name = request.message
        seen[name] = seen.get(name, 0) + 1
        if seen[name] <= refusals.get(name, 0):
            await request.reset(Errors.REFUSED_STREAM)
        else:
            await echo(request)

    async with serving(handler) as (server, channel):
        assert await call(channel, b"once") == ("decoded", b"echo:once")
        assert await watch(channel, b"once-stream") == [("decoded", b"echo:once-stream")]
        with pytest.raises(FlameError) as raised:
            await call(channel, b"always")
        # The same connection throughout: a refused stream does not end it.
        assert len({id(request.connection) for request in server.requests}) == 1
    assert seen == {b"once": 2, b"once-stream": 1, b"always": RetryPolicy().attempts}
    # The connection still worked: each retry waited, longer each time.
    pause = RetryPolicy().first_pause
    assert pauses == [pause, pause, pause * 4]
    assert raised.value.code is FlameErrorCode.UNAVAILABLE
    assert "refused the call (REFUSED_STREAM) before processing it" in raised.value.message


async def test_a_stream_refused_after_its_first_message_is_not_made_again() -> None:
    async def handler(request: Request) -> None:
        await request.respond()
        await request.send_messages(b"first")
        await request.reset(Errors.REFUSED_STREAM)

    async with serving(handler) as (server, channel):
        first, error = await watch(channel, b"stream")
    assert first == ("decoded", b"first")
    assert isinstance(error, FlameError) and error.code is FlameErrorCode.UNAVAILABLE
    assert len(server.requests) == 1


# --------------------------------------------------------------------------
# Endpoints that are not HTTP/2 servers, and connections that go


async def _drain(stream: Any) -> None:
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
        while True:
            await stream.receive()


async def _http1(stream: Any) -> None:
    seen = b""
    while len(seen) < len(_frames.PREFACE):
        seen += await stream.receive()
    await stream.send(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
    await _drain(stream)


async def test_an_http1_server_is_named_at_once_not_after_a_timeout() -> None:
    with anyio.fail_after(BOUND):
        async with scripted(raw=_http1) as server, await Channel.connect(server.url) as channel:
            with pytest.raises(FlameError) as unary:
                await call(channel, timeout=BOUND)
            (streamed,) = await watch(channel)
    # Not TIMEOUT: the calls failed on the answer, not after their timeout.
    for error in (unary.value, streamed):
        assert isinstance(error, FlameError)
        assert error.code is FlameErrorCode.INTERNAL
        assert "does not answer in HTTP/2" in error.message


async def test_a_server_that_never_answers_costs_the_calls_their_timeout() -> None:
    with anyio.fail_after(BOUND):
        async with scripted(raw=_drain) as server, await Channel.connect(server.url) as channel:
            started = anyio.current_time()
            with pytest.raises(FlameError) as unary:
                await call(channel, timeout=0.2)
            with pytest.raises(FlameError) as streamed:
                async with channel.open_stream(WATCH, b"x", tagged, timeout=0.2) as items:
                    async for _ in items:
                        pass
            elapsed = anyio.current_time() - started
    # Each call waited its whole timeout (no upper bound: a busy machine may
    # be slow to notice; TIMEOUT below says the timeout ended them).
    assert elapsed >= 0.4
    for error in (unary.value, streamed.value):
        assert error.code is FlameErrorCode.TIMEOUT
        assert "within 0.2 s" in error.message


async def test_a_connection_dropped_mid_call_fails_it_and_the_next_call_reconnects() -> None:
    async def handler(request: Request) -> None:
        if request.message == b"again":
            await echo(request)
            return
        await request.respond()
        await request.send_messages(b"partial")
        request.connection.drop()

    async with serving(handler) as (server, channel):
        with pytest.raises(FlameError) as unary:
            await call(channel)
        first, error = await watch(channel)
        last = await check_still_usable(server, channel)
        connections = [r.connection for r in server.requests]
    assert len(set(connections)) == 3 and connections[-1] is last
    assert unary.value.code is FlameErrorCode.UNAVAILABLE
    assert "connection was lost" in unary.value.message
    assert first == ("decoded", b"partial")
    assert isinstance(error, FlameError)
    assert error.code is FlameErrorCode.UNAVAILABLE


@pytest.mark.parametrize("how", ["closed", "goaway"])
async def test_a_connection_the_server_ends_while_idle_is_replaced_without_an_error(
    how: str,
) -> None:
    async with serving(echo) as (server, channel):
        first = await check_still_usable(server, channel)
        old = lean(channel)
        if how == "closed":
            first.drop()
        else:
            goaway = GoAwayFrame(0, last_stream_id=1, error_code=0, additional_data=b"bye")
            await first.send_raw(lambda: [goaway])

        def noticed() -> bool:
            # A connection nobody is reading looks at what came in now.
            old.catch_up()
            return not old.usable

        await wait_until(noticed, "the client noticing the server's end")
        again = await check_still_usable(server, channel)
    assert again is not first
    assert old.closed


# --------------------------------------------------------------------------
# Calls abandoned by the client


@pytest.mark.parametrize("held", ["before-headers", "mid-message"])
async def test_a_cancelled_call_resets_its_stream_and_the_connection_goes_on(held: str) -> None:
    holding = anyio.Event()

    async def handler(request: Request) -> None:
        if request.message == b"again":
            await echo(request)
            return
        if held == "mid-message":
            await request.respond()
            await request.send(grpc(b"never finished")[:8])
        holding.set()
        await request.wait_reset()

    async with serving(handler) as (server, channel):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, channel)
                await holding.wait()
                scope.cancel()
        assert scope.cancelled_caught
        assert await server.requests[0].wait_reset() == Errors.CANCEL
        assert await check_still_usable(server, channel) is server.requests[0].connection
        assert lean(channel).streams == {}


async def test_leaving_a_stream_early_resets_it() -> None:
    async def handler(request: Request) -> None:
        if request.message == b"again":
            await echo(request)
            return
        await request.respond()
        await request.send_messages(b"first", b"second")
        await request.wait_reset()

    async with serving(handler) as (server, channel):
        async with channel.open_stream(WATCH, b"x", tagged) as items:
            assert await items.__anext__() == ("decoded", b"first")
        assert await server.requests[0].wait_reset() == Errors.CANCEL
        assert await check_still_usable(server, channel) is server.requests[0].connection
        assert lean(channel).streams == {}


async def test_a_call_waiting_for_a_stream_goes_once_one_is_left_with_nothing_arriving() -> None:
    # One stream at a time. The first stream is open and nobody reads it; the
    # second call waits for the stream (under trio, reading the connection
    # meanwhile). Leaving the first frees the stream with no byte arriving:
    # the second call must notice, and go.
    async def handler(request: Request) -> None:
        if request.message == b"first":
            await request.respond()
            await request.send_messages(b"one")
            await request.wait_reset()
        else:
            await echo(request)

    one_at_a_time = {Settings.MAX_CONCURRENT_STREAMS: 1}
    async with serving(handler, settings=one_at_a_time) as (server, channel):
        await check_still_usable(server, channel)  # the server's limit is known
        results: list[Any] = []
        async with channel.open_stream(WATCH, b"first", tagged) as first:
            assert await first.__anext__() == ("decoded", b"one")
            async with anyio.create_task_group() as tg:
                tg.start_soon(_into, results, channel, b"second")
                await wait_until(lambda: bool(lean(channel)._slot_waiters), "a call waiting")
                first.close()
        assert results == [("decoded", b"echo:second")]
        assert await server.requests[1].wait_reset() == Errors.CANCEL


async def test_a_caller_leaving_its_wait_hands_the_reading_on() -> None:
    release = anyio.Event()

    async def handler(request: Request) -> None:
        await release.wait()
        await echo(request)

    async with serving(handler) as (server, channel):
        results: list[Any] = []
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as leaving:
                # The first caller to wait (under trio, the one reading) leaves
                # while the second waits.
                async with anyio.create_task_group() as first:
                    first.start_soon(_into, results, channel, b"first")
                    await server.wait_for(lambda: len(server.requests) == 1)
                    tg.start_soon(_into, results, channel, b"second")
                    await server.wait_for(lambda: len(server.requests) == 2)
                    leaving.cancel()
            release.set()
        assert results == [("decoded", b"echo:second")]


async def _into(results: list[Any], channel: Channel, request: bytes) -> None:
    results.append(await call(channel, request))


# --------------------------------------------------------------------------
# HPACK: the server's dynamic table, and the client's cache of decoded blocks


async def test_replies_encoded_with_a_changing_dynamic_table_are_each_read_right() -> None:
    # Every reply adds a header to the table, moving every entry's index on,
    # so the same bytes mean different headers from one call to the next (a
    # trailer block of one indexed "grpc-status" reads 0 on one call and 5 on
    # another): a decoded block kept past a change would be read wrong.
    async def handler(request: Request) -> None:
        n = int(request.message)
        await request.respond([*GRPC_HEADERS, ("x-call", f"call-{n}")])
        if n % 3 == 0:
            await request.finish(5, f"no task {n}" if n % 2 else None)
        else:
            await request.send_messages(f"reply {n}".encode())
            await request.finish(0)

    async with serving(handler) as (server, channel):
        for n in range(200):
            got = await outcome(call(channel, str(n).encode()))
            if n % 3:
                assert got == ("decoded", f"reply {n}".encode())
            else:
                assert isinstance(got, FlameError), (n, got)
                assert got.code is FlameErrorCode.NOT_FOUND
                assert (f"no task {n}" in got.message) == bool(n % 2)
        (connection,) = {r.connection for r in server.requests}
    assert len(connection.h2.encoder.header_table.dynamic_entries) > 10


async def test_a_server_resizing_its_table_is_followed_whatever_was_cached() -> None:
    # Blocks that resize the table but add nothing to it: decoded once, they
    # may not be answered from the cache later, or their resize is lost.
    plain = [(":status", "200"), hpack.NeverIndexedHeaderTuple("content-type", "application/grpc")]
    steps = ["indexed", "shrink", "grow", "shrink", "grow", "indexed", "indexed", "indexed"]

    async def handler(request: Request) -> None:
        step = request.message.decode()
        encoder = request.h2.encoder
        if step == "shrink":
            encoder.header_table_size = 0
        elif step == "grow":
            encoder.header_table_size = 4096
        await request.respond(GRPC_HEADERS if step == "indexed" else plain)
        await request.send_messages(step.encode())
        await request.respond([hpack.NeverIndexedHeaderTuple("grpc-status", "0")], end_stream=True)

    async with serving(handler) as (_, channel):
        for step in steps:
            assert await call(channel, step.encode()) == ("decoded", step.encode()), step


async def test_a_server_allowing_no_header_table_reads_every_request() -> None:
    # The server's h2 holds our blocks to a table of 0 bytes from the start.
    async with serving(echo, settings={Settings.HEADER_TABLE_SIZE: 0}) as (server, channel):
        for n in range(20):
            assert await call(channel, b"%d" % n) == ("decoded", b"echo:%d" % n)
        assert await watch(channel, b"w") == [("decoded", b"echo:w")]
    assert [r.headers[":path"] for r in server.requests] == [GET] * 20 + [WATCH]
