"""Function sessions against the embedded cluster: calls, map, errors, registration.

Each test runs under asyncio and trio; the service is the real one
(``python -m flame.functions``), started by the cluster's Grpc shim.
"""

from __future__ import annotations

import io
import sys
import threading
import traceback
from collections.abc import AsyncIterator

import anyio
import pytest
import rich.console

import flame
from flame.functions import DEFAULT_APPLICATION, SERVICE_ARGUMENTS

from . import _remote


def _notes(error: BaseException) -> str:
    return "\n".join(getattr(error, "__notes__", []))


async def _counters(conn: flame.Connection, session_id: str) -> tuple[int, int, int, int]:
    session = await conn.get_session(session_id)
    return session.pending, session.running, session.succeed, session.failed


# ----------------------------------------------------------------------
# Calls and their values


async def test_a_call_returns_the_value(conn: flame.Connection) -> None:
    async with await conn.function_session(_remote.add) as f:
        assert await f(2) == 2
        assert await f(2, 3, scale=10) == 50
        assert await f(x=1, y=1) == 2
        assert f.function.endswith("add")
    closed = await conn.get_session(f.session.id)
    assert closed.state is flame.SessionState.CLOSED


async def test_closures_and_lambdas_travel_by_value(conn: flame.Connection) -> None:
    offset = 100
    table = {"a": 1, "b": 2}

    def closure(key: str) -> int:
        return table[key] + offset

    async with await conn.function_session(closure) as f:
        assert await f.map(["a", "b"]) == [101, 102]
    async with await conn.function_session(lambda x: [x] * 2) as g:
        assert await g("x") == ["x", "x"]


async def test_a_function_of_an_importable_module_travels_by_reference(
    conn: flame.Connection,
) -> None:
    import math

    async with await conn.function_session(math.factorial) as f:
        assert await f.map([0, 5, 10]) == [1, 120, 3628800]


async def test_values_of_classes_defined_in_the_client_come_back_as_them(
    conn: flame.Connection,
) -> None:
    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

    def mirror(point: Point) -> Point:
        return Point(point.y, point.x)

    async with await conn.function_session(mirror) as f:
        back = await f(Point(1, 2))
    assert isinstance(back, Point)
    assert (back.x, back.y) == (2, 1)


async def test_a_plain_function_runs_in_a_worker_thread_an_async_one_on_the_loop(
    conn: flame.Connection,
) -> None:
    async with await conn.function_session(_remote.where_it_runs) as f:
        assert await f() is False
    async with await conn.function_session(_remote.async_where_it_runs) as g:
        assert await g.map([0.01, 0.0, 0.02]) == ["asyncio"] * 3


async def test_async_functions_under_a_trio_service(conn: flame.Connection) -> None:
    import sys

    await conn.register_application(
        "functions-trio",
        {
            "shim": flame.Shim.GRPC,
            "command": sys.executable,
            "arguments": [*SERVICE_ARGUMENTS, "--backend", "trio"],
        },
    )
    async with await conn.function_session(
        _remote.async_where_it_runs, application="functions-trio"
    ) as f:
        assert await f(0.0) == "trio"


# ----------------------------------------------------------------------
# Many calls


async def test_map_gives_values_in_input_order(conn: flame.Connection) -> None:
    async with await conn.function_session(_remote.slower_first, slots=1) as f:
        finished: list[int] = []
        async with f.as_completed(range(10), concurrency=10) as results:
            async for index, value in results:
                assert index == value
                finished.append(index)
        # Completion order differs from input order, yet map keeps the latter.
        assert sorted(finished) == list(range(10))
        assert await f.map(range(10), concurrency=10) == list(range(10))
        assert await f.map([]) == []


async def test_starmap_and_async_inputs(conn: flame.Connection) -> None:
    async def pairs() -> AsyncIterator[tuple[int, int]]:
        for x in range(5):
            await anyio.lowlevel.checkpoint()
            yield (x, x)

    async with await conn.function_session(_remote.add) as f:
        assert await f.starmap([(1, 2), [3, 4], (5,)]) == [3, 7, 5]
        assert await f.starmap(pairs(), concurrency=2) == [0, 2, 4, 6, 8]
        got = {}
        async with f.as_completed(pairs(), star=True) as results:
            async for index, value in results:
                got[index] = value
        assert got == {0: 0, 1: 2, 2: 4, 3: 6, 4: 8}
        with pytest.raises(flame.FlameError) as info:
            await f.starmap([(1, 2), 3])
        assert info.value.code is flame.FlameErrorCode.INVALID_ARGUMENT
        assert "input 1 of starmap is a int" in info.value.message


async def test_inputs_are_read_lazily(conn: flame.Connection) -> None:
    taken = []

    def inputs() -> object:
        for x in range(1000):
            taken.append(x)
            yield x

    async with (
        await conn.function_session(_remote.square) as f,
        f.as_completed(inputs(), concurrency=2) as results,
    ):
        async for index, value in results:
            assert value == index * index
            break
    # Leaving after the first value: only what was in flight had been read.
    assert len(taken) <= 4


async def test_not_an_iterable_is_refused_before_any_task(conn: flame.Connection) -> None:
    async with await conn.function_session(_remote.square) as f:
        with pytest.raises(flame.FlameError) as info:
            await f.map(42)  # type: ignore[arg-type]
        assert info.value.code is flame.FlameErrorCode.INVALID_ARGUMENT
        assert "iterable" in info.value.message
        with pytest.raises(flame.FlameError):
            await f.map([1], concurrency=0)
        # The probe alone ran.
        assert await _counters(conn, f.session.id) == (0, 0, 1, 0)


# ----------------------------------------------------------------------
# Exceptions raised remotely


async def test_an_exception_comes_back_as_itself_with_its_remote_traceback(
    conn: flame.Connection,
) -> None:
    async with await conn.function_session(_remote.refuse_three) as f:
        with pytest.raises(_remote.Refused) as info:
            await f(3)
        session_id = f.session.id
    error = info.value
    assert str(error) == "three is refused (x=3)"
    notes = _notes(error)
    assert notes.startswith("Remote traceback (task ")
    assert "Traceback (most recent call last):" in notes
    # The function's own frame, in its own file, with its line's text.
    assert f'File "{_remote.__file__}"' in notes
    assert "in refuse_three" in notes
    assert 'raise Refused(f"three is refused (x={x})")' in notes
    assert "_service.py" not in notes
    # Printed with the exception, on 3.10 too.
    printed = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    assert printed.rstrip().endswith(notes.rstrip())
    # A call that raised is a task that succeeded, with the exception as its output.
    assert await _counters(conn, session_id) == (0, 0, 2, 0)


async def test_map_raises_the_first_exception_and_closes_the_session(
    conn: flame.Connection,
) -> None:
    async with await conn.function_session(_remote.refuse_three) as f:
        with pytest.raises(_remote.Refused) as info:
            await f.map(range(50), concurrency=4)
        assert "Remote traceback (input 3, task " in _notes(info.value)
        # The session is still usable after it.
        assert await f.map([1, 2]) == [1, 2]
    # Closing waited for the calls that were cancelled here but still ran there.
    closed = await conn.get_session(f.session.id)
    assert closed.state is flame.SessionState.CLOSED
    assert closed.pending == closed.running == 0


async def test_an_exception_leaving_the_block_still_closes_the_session(
    conn: flame.Connection,
) -> None:
    with pytest.raises(_remote.Refused):
        async with (
            await conn.function_session(_remote.refuse_three) as f,
            f.as_completed(range(20), concurrency=8) as results,
        ):
            async for _ in results:
                pass
    closed = await conn.get_session(f.session.id)
    assert closed.state is flame.SessionState.CLOSED


async def test_an_exception_that_does_not_unpickle_is_a_flame_error(
    conn: flame.Connection,
) -> None:
    async with await conn.function_session(_remote.raise_two_arguments) as f:
        with pytest.raises(flame.FlameError) as info:
            await f()
    error = info.value
    assert error.code is flame.FlameErrorCode.INTERNAL
    assert "raised " in error.message and "TwoArguments: one and two" in error.message
    assert "could not be pickled in the service" in error.message
    assert 'raise TwoArguments("one", "two")' in error.message


async def test_system_exit_is_not_raised_again_as_itself(conn: flame.Connection) -> None:
    async with await conn.function_session(_remote.exit_the_service) as f:
        with pytest.raises(flame.FlameError) as info:
            await f()
        assert "raised SystemExit: 7" in info.value.message
        assert "only exceptions derived from Exception" in info.value.message
        # The service caught it: it is still there for the next call.
        with pytest.raises(flame.FlameError):
            await f()
        assert (await _counters(conn, f.session.id))[3] == 0


async def test_a_flame_error_raised_remotely_keeps_its_code(conn: flame.Connection) -> None:
    async with await conn.function_session(_remote.raise_flame_error) as f:
        with pytest.raises(flame.FlameError) as info:
            await f()
    assert info.value.code is flame.FlameErrorCode.NOT_FOUND
    assert info.value.message == "nothing here"


async def test_a_service_that_dies_fails_the_call_with_its_status(conn: flame.Connection) -> None:
    async with await conn.function_session(_remote.die_on_two, slots=1) as f:
        with pytest.raises(flame.FlameError) as info:
            await f.map([0, 1, 2, 3], concurrency=1)
        assert info.value.code is flame.FlameErrorCode.INTERNAL
        assert "exited with code 3" in info.value.message
        # The executor starts the service again for the next call.
        assert await f(5) == 5


async def test_a_cancelled_map_leaves_a_session_that_closes(conn: flame.Connection) -> None:
    async with await conn.function_session(_remote.sleep_then_echo, slots=1) as f:
        with anyio.move_on_after(0.3) as scope:
            await f.map([0.2] * 20, concurrency=2)
        assert scope.cancelled_caught
    # Leaving waited for the calls that were running when the map was cancelled.
    closed = await conn.get_session(f.session.id)
    assert closed.state is flame.SessionState.CLOSED
    assert closed.succeed < 1 + 20


# ----------------------------------------------------------------------
# What cannot be pickled


async def test_a_function_that_cannot_be_pickled_fails_before_any_call(
    conn: flame.Connection,
) -> None:
    lock = threading.Lock()

    def locked(x: int) -> int:
        with lock:
            return x

    with pytest.raises(flame.FlameError) as info:
        await conn.function_session(locked)
    error = info.value
    assert error.code is flame.FlameErrorCode.INVALID_ARGUMENT
    assert "the function " in error.message and "locked cannot be pickled" in error.message
    assert "closure variable 'lock' (a _thread.lock) cannot be pickled" in error.message
    # Nothing was registered, no session opened.
    assert await conn.list_sessions() == []
    assert await conn.list_applications() == []


async def test_a_result_that_cannot_be_pickled_fails_its_call(conn: flame.Connection) -> None:
    async with await conn.function_session(_remote.a_generator) as f:
        with pytest.raises(flame.FlameError) as info:
            await f()
        assert info.value.code is flame.FlameErrorCode.INTERNAL
        assert "the result of" in info.value.message
        assert "(a generator) cannot be pickled" in info.value.message
    async with await conn.function_session(_remote.maybe_a_lock) as g:
        with pytest.raises(flame.FlameError) as info:
            await g(True)
        assert "item 'lock' (a _thread.lock) cannot be pickled" in info.value.message
        # The next call runs as usual.
        assert await g(False) == {"ok": 1}


async def test_arguments_that_cannot_be_pickled_fail_before_their_task(
    conn: flame.Connection,
) -> None:
    async with await conn.function_session(_remote.echo) as f:
        before = await _counters(conn, f.session.id)
        with pytest.raises(flame.FlameError) as info:
            await f(threading.Lock())
        assert info.value.code is flame.FlameErrorCode.INVALID_ARGUMENT
        assert "argument 0 (a _thread.lock) cannot be pickled" in info.value.message
        assert await _counters(conn, f.session.id) == before

        def inputs() -> object:
            yield 1
            yield 2
            yield threading.Lock()
            raise AssertionError("no input is read after one that cannot be pickled")

        with pytest.raises(flame.FlameError) as info:
            await f.map(inputs(), concurrency=1)
        assert "input 2 of map cannot be pickled" in info.value.message
        # Tasks were made for inputs 0 and 1 only.
        assert (await _counters(conn, f.session.id))[2] == before[2] + 2


# ----------------------------------------------------------------------
# Versions, applications, options


@pytest.mark.parametrize(
    ("python", "sdk", "said"),
    [
        ("3.9.18", None, "the client runs Python 3.9.18 and the service Python "),
        (None, "0.0.1", "the client has flame-sdk 0.0.1 and the service flame-sdk "),
    ],
)
async def test_a_version_mismatch_is_reported_when_the_session_opens(
    conn: flame.Connection,
    monkeypatch: pytest.MonkeyPatch,
    python: str | None,
    sdk: str | None,
    said: str,
) -> None:
    from flame.functions import _envelope

    real = _envelope.Versions.here()
    claimed = _envelope.Versions(python or real.python, sdk or real.sdk, real.protocol)
    monkeypatch.setattr(_envelope.Versions, "here", classmethod(lambda cls: claimed))
    with pytest.raises(flame.FlameError) as info:
        await conn.function_session(_remote.square)
    error = info.value
    assert error.code is flame.FlameErrorCode.INVALID_CONFIG
    assert said in error.message
    assert "cannot run in the service of application 'flame-functions'" in error.message
    # The session the probe ran in is closed again.
    (session,) = await conn.list_sessions()
    assert session.state is flame.SessionState.CLOSED


async def test_the_application_is_registered_once_and_reused(conn: flame.Connection) -> None:
    async with await conn.function_session(_remote.square) as f:
        assert await f(2) == 4
    async with await conn.function_session(_remote.add) as g:
        assert await g(2, 2) == 4
    (application,) = await conn.list_applications()
    assert application.name == DEFAULT_APPLICATION
    assert application.shim is flame.Shim.GRPC
    assert application.command == sys.executable
    assert application.arguments == list(SERVICE_ARGUMENTS)


async def test_name_and_command_can_be_chosen(conn: flame.Connection) -> None:
    async with await conn.function_session(
        _remote.square, application="mine", command=sys.executable
    ) as f:
        assert await f(3) == 9
    (application,) = await conn.list_applications()
    assert (application.name, application.command) == ("mine", sys.executable)
    with pytest.raises(flame.FlameError) as info:
        await conn.function_session(_remote.square, application="mine", command="/usr/bin/python3")
    assert info.value.code is flame.FlameErrorCode.INVALID_STATE
    assert "registered with command" in info.value.message


async def test_a_registration_made_meanwhile_is_used(
    conn: flame.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another client registers the application between our look and ours.
    await conn.register_application(
        DEFAULT_APPLICATION,
        {"shim": flame.Shim.GRPC, "command": sys.executable, "arguments": list(SERVICE_ARGUMENTS)},
    )
    real = conn.list_applications
    looks = []

    async def first_look_sees_nothing() -> list[flame.Application]:
        looks.append(1)
        return [] if len(looks) == 1 else await real()

    monkeypatch.setattr(conn, "list_applications", first_look_sees_nothing)
    async with await conn.function_session(_remote.square) as f:
        assert await f(5) == 25
    assert len(looks) == 2


async def test_session_options(conn: flame.Connection) -> None:
    async with await conn.function_session(_remote.square, slots=2) as f:
        assert f.session.slots == 2
    for options, said in [
        ({"common_data": b"x"}, "carries its function in common_data"),
        ({"slot": 2}, "unknown session option 'slot'; the options are: slots"),
        ({"slots": 0}, "slots must be an integer of at least 1"),
    ]:
        with pytest.raises(flame.FlameError) as info:
            await conn.function_session(_remote.square, **options)
        assert info.value.code is flame.FlameErrorCode.INVALID_ARGUMENT
        assert said in info.value.message
    with pytest.raises(flame.FlameError) as info:
        await conn.function_session(42)  # type: ignore[call-overload]
    assert "function must be callable, not a int" in info.value.message


async def test_an_application_that_is_not_the_function_service(conn: flame.Connection) -> None:
    await conn.register_application("log", {"shim": flame.Shim.LOG})
    with pytest.raises(flame.FlameError) as info:
        await conn.function_session(_remote.square, application="log")
    assert info.value.code is flame.FlameErrorCode.INVALID_CONFIG
    assert "did not answer as the function service does" in info.value.message
    assert "-m flame.functions" in info.value.message
    (session,) = await conn.list_sessions()
    assert session.state is flame.SessionState.CLOSED


async def test_a_function_the_service_cannot_import(
    conn: flame.Connection, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pathlib

    folder = pathlib.Path(str(tmp_path))
    (folder / "only_in_the_client.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(folder))
    import only_in_the_client  # type: ignore[import-not-found]

    with pytest.raises(flame.FlameError) as info:
        await conn.function_session(only_in_the_client.double)
    error = info.value
    assert error.code is flame.FlameErrorCode.INVALID_CONFIG
    assert "could not be loaded in the service" in error.message
    assert "No module named 'only_in_the_client'" in error.message
    assert "register_pickle_by_value" in error.message


@pytest.mark.usefixtures("plain_terminal")
async def test_map_and_as_completed_show_progress_labelled_with_the_function(
    conn: flame.Connection,
) -> None:
    seen: list[flame.TaskCounts] = []
    async with await conn.function_session(_remote.square, slots=1) as f:
        # range is converted to calls one at a time, yet its length is the total.
        progress = flame.Progress(callback=seen.append)
        assert await f.map(range(4), progress=progress) == [0, 1, 4, 9]
        assert seen[-1].final and (seen[-1].done, seen[-1].total) == (4, 4)
        assert all(counts.total == 4 for counts in seen)
        out = io.StringIO()
        console = rich.console.Console(file=out, force_terminal=True, width=150)
        pairs = ((x,) for x in range(3))
        on_console = flame.Progress(console=console)
        async with f.as_completed(pairs, star=True, progress=on_console) as results:
            assert sorted([value async for _, value in results]) == [0, 1, 4]
        with pytest.raises(flame.FlameError) as caught:
            await f.map([1], progress=5)  # type: ignore[arg-type]
        assert caught.value.code is flame.FlameErrorCode.INVALID_ARGUMENT
    drawn = out.getvalue()
    assert "square" in drawn and "3/3" in drawn
