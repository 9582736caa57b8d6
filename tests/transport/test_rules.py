"""The one rule for time and retries, for every kind of call.

Every call with a timeout tells the server its deadline (``grpc-timeout``)
and ends on its own when the deadline passes; a call the server never
processed is made again as the channel's RetryPolicy says. Both hold for the
calls made with an encoded request (``Channel.call``, ``Channel.open_stream``)
and for the generated stubs' calls alike, checked here against a scripted
server that shows what it received.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import h2.errors
import hpack
import pytest
from _h2_server import Request, ScriptedServer, scripted
from grpclib.metadata import decode_timeout

import flame
from flame import FlameError, FlameErrorCode
from flame._proto.v04 import flame as pb
from flame._transport import Channel, RetryPolicy, _pool
from flame._transport._frames import request_headers, timeout_field

GET = "/flame.Frontend/GetTask"
WATCH = "/flame.Frontend/WatchTask"

#: A hang guard for a whole test, not a timing assertion.
BOUND = 5.0

TASK = bytes(pb.Task(metadata=pb.Metadata(id="7")))


@contextlib.asynccontextmanager
async def serving(
    handler: Callable[[Request], Awaitable[None]], **connect: Any
) -> AsyncIterator[tuple[ScriptedServer, Channel]]:
    with anyio.fail_after(BOUND):
        async with scripted(handler) as server:
            async with await Channel.connect(server.url, **connect) as channel:
                yield server, channel
            assert server.protocol_errors == []


def deadline_of(request: Request) -> float | None:
    """The deadline the request carried, in seconds; None if it carried none."""
    value = request.headers.get("grpc-timeout")
    return None if value is None else decode_timeout(value)


async def answer(request: Request) -> None:
    path = request.headers[":path"]
    if path == WATCH:
        await request.reply(TASK, TASK)
    elif path.endswith("ListApplication"):
        await request.reply(b"")  # an empty list
    else:
        await request.reply(TASK)


# --------------------------------------------------------------------------
# Deadlines


@pytest.mark.parametrize("seconds", [0.0, 0.0004, 0.05, 1.0, 60.0, 99_999.0, 1e6, 1e9, 1e12, 1e15])
def test_the_timeout_field_says_at_least_the_timeout_and_leaves_the_table_alone(
    seconds: float,
) -> None:
    block = request_headers("http", "host:1", GET, "test") + timeout_field(seconds)
    decoder = hpack.Decoder()
    headers = dict(decoder.decode(block))
    assert decoder.header_table.dynamic_entries == type(decoder.header_table.dynamic_entries)()
    value = headers["grpc-timeout"]
    assert value[:-1].isdigit() and len(value) <= 9  # at most 8 digits and a unit
    # Never earlier than ours (but for what 8 digits of hours cannot say),
    # and not much later (a millisecond, or the unit).
    sent = decode_timeout(value)
    assert sent >= min(seconds, 99_999_999 * 3600)
    assert sent <= max(seconds * 1.001, seconds + 0.0011) or value.endswith(("S", "H"))
    # The path's block itself is unchanged in front of it.
    assert headers[":path"] == GET


async def test_every_kind_of_call_tells_the_server_its_deadline() -> None:
    async with serving(answer) as (server, channel):
        stub = pb.FrontendStub(channel)
        await channel.call(GET, b"", pb.Task.parse, timeout=5)
        async with channel.open_stream(WATCH, b"", pb.Task.parse, timeout=3) as messages:
            assert len([m async for m in messages]) == 2
        await stub.get_task(pb.GetTaskRequest(task_id="7"), timeout=2)
        async with channel.stream(stub.watch_task, pb.WatchTaskRequest(), timeout=4) as it:
            assert len([m async for m in it]) == 2
        # No timeout, no deadline.
        await channel.call(GET, b"", pb.Task.parse)
        await stub.get_task(pb.GetTaskRequest(task_id="7"))
    sent = [deadline_of(request) for request in server.requests]
    for deadline, timeout in zip(sent[:4], [5, 3, 2, 4], strict=True):
        assert deadline is not None and timeout - 1 < deadline <= timeout + 0.002
    assert sent[4:] == [None, None]


async def test_a_connections_request_timeout_goes_to_the_cluster() -> None:
    async def handler(request: Request) -> None:
        path = request.headers[":path"]
        if path.endswith("CreateSession"):
            await request.reply(bytes(pb.Session(metadata=pb.Metadata(id="1"))))
        elif path.endswith("CreateTask"):
            await request.reply(TASK)
        else:
            await request.reply(b"")

    with anyio.fail_after(BOUND):
        async with (
            scripted(handler) as server,
            # The wire named: no probe, only the calls below reach the server.
            await flame.connect(server.url, request_timeout=7, wire="v0.4") as conn,
        ):
            session = await conn.create_session(flame.SessionAttributes(application="a"))
            await session.create_task(b"x")
    deadlines = {r.headers[":path"].rsplit("/", 1)[1]: deadline_of(r) for r in server.requests}
    assert set(deadlines) == {"CreateSession", "CreateTask"}
    for deadline in deadlines.values():
        assert deadline is not None and 6 < deadline <= 7.002


# --------------------------------------------------------------------------
# Retries


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []

    async def recorded_sleep(delay: float) -> None:
        recorded.append(delay)
        await anyio.lowlevel.checkpoint()

    monkeypatch.setattr(_pool, "_sleep", recorded_sleep)
    return recorded


def refusing(times: int) -> tuple[dict[bytes, int], Callable[[Request], Awaitable[None]]]:
    """A handler refusing each request (by its body) ``times`` times before answering."""
    seen: dict[bytes, int] = {}

    async def handler(request: Request) -> None:
        body = bytes(request.body)
        seen[body] = seen.get(body, 0) + 1
        if seen[body] <= times:
            await request.reset(h2.errors.ErrorCodes.REFUSED_STREAM)
        else:
            await answer(request)

    return seen, handler


async def test_stub_calls_are_made_again_as_the_policy_says(pauses: list[float]) -> None:
    seen, handler = refusing(3)
    policy = RetryPolicy(attempts=4, first_pause=0.02, multiplier=3)
    async with serving(handler, retry=policy) as (_, channel):
        stub = pb.FrontendStub(channel)
        task = await stub.get_task(pb.GetTaskRequest(task_id="unary"))
        assert task.metadata.id == "7"
        async with channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="stream")) as it:
            assert len([m async for m in it]) == 2
    assert sorted(seen.values()) == [4, 4]
    assert pauses == pytest.approx([0.02, 0.06, 0.18] * 2)


async def test_a_policy_of_one_attempt_makes_every_call_once(pauses: list[float]) -> None:
    seen, handler = refusing(1)
    async with serving(handler, retry=RetryPolicy(attempts=1)) as (_, channel):
        stub = pb.FrontendStub(channel)
        with pytest.raises(FlameError) as unary:
            await stub.get_task(pb.GetTaskRequest(task_id="unary"))
        with pytest.raises(FlameError) as stream:
            await channel.call(GET, b"lean", pb.Task.parse)
    for error in (unary.value, stream.value):
        assert error.code is FlameErrorCode.UNAVAILABLE
        assert "before processing it" in error.message
    assert list(seen.values()) == [1, 1]
    assert pauses == []


@pytest.mark.parametrize("attempts", [1, 3])
async def test_connect_takes_the_retry_policy(pauses: list[float], attempts: int) -> None:
    seen, handler = refusing(1)
    with anyio.fail_after(BOUND):
        async with (
            scripted(handler) as server,
            await flame.connect(
                server.url, retry=flame.RetryPolicy(attempts=attempts), wire="v0.4"
            ) as conn,
        ):
            if attempts == 1:
                with pytest.raises(FlameError) as caught:
                    await conn.list_applications()
                assert caught.value.code is FlameErrorCode.UNAVAILABLE
            else:
                assert await conn.list_applications() == []
    assert list(seen.values()) == [min(attempts, 2)]


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ({"attempts": 0}, "attempts is 0"),
        ({"attempts": 2.5}, "attempts must be an int"),
        ({"attempts": True}, "attempts must be an int"),
        ({"first_pause": -1}, "first_pause is -1"),
        ({"first_pause": "0.1"}, "first_pause must be a number"),
        ({"multiplier": 0.5}, "multiplier is 0.5"),
        ({"multiplier": float("nan")}, "multiplier must be a number"),
    ],
)
def test_a_bad_retry_policy_is_refused_saying_why(arguments: dict[str, Any], said: str) -> None:
    with pytest.raises(FlameError) as caught:
        flame.RetryPolicy(**arguments)
    assert caught.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert said in caught.value.message


async def test_connect_refuses_a_retry_that_is_not_a_policy(anyio_backend: str) -> None:
    with pytest.raises(FlameError) as caught:
        await flame.connect("http://127.0.0.1:1", retry=3)  # type: ignore[arg-type]
    assert caught.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert "RetryPolicy" in caught.value.message


def test_the_default_policy_is_three_attempts_pausing_10_then_40_ms() -> None:
    policy = flame.RetryPolicy()
    assert policy.attempts == 3
    assert [policy.pause(attempt) for attempt in (1, 2)] == pytest.approx([0.01, 0.04])
