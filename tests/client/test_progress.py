"""Progress of many tasks: ``progress=`` on run_tasks and as_completed.

Against the v0.4-faithful server, whose tasks fail or wait at will
(``b"fail:<text>"``, ``b"hold"``). The display is read as a terminal shows
it: a rich Console writing to a string, forced to be a terminal; the
counts a callback is given are read as they are. Nothing here depends on
how long anything takes: what is checked is the last frame and the final
counts, which every run draws or gives, however it ends.
"""

from __future__ import annotations

import io
import re
import sys
from typing import Any

import anyio
import pytest
import rich.console
import rich.progress
from v04_server import V04Server

import flame

from .test_cancellation import _loop_tasks, _settle, _threads

# What rich writes when a live display ends: the cursor it hid, shown again.
SHOW_CURSOR = "\x1b[?25h"
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


pytestmark = pytest.mark.usefixtures("plain_terminal")


def _terminal() -> tuple[rich.console.Console, io.StringIO]:
    out = io.StringIO()
    return rich.console.Console(file=out, force_terminal=True, width=150), out


def _frames(out: io.StringIO) -> list[str]:
    """What was drawn, frame by frame, without the terminal's escapes."""
    text = ESCAPES.sub("", out.getvalue())
    return [frame.strip() for frame in re.split(r"[\r\n]", text) if frame.strip()]


async def _session(conn: flame.Connection) -> flame.Session:
    await conn.register_application("app", {"shim": flame.Shim.SHELL})
    return await conn.create_session(flame.SessionAttributes(application="app"))


class _Counts:
    """A progress callback that keeps every TaskCounts it is given."""

    def __init__(self) -> None:
        self.seen: list[flame.TaskCounts] = []

    def __call__(self, counts: flame.TaskCounts) -> None:
        self.seen.append(counts)

    @property
    def final(self) -> flame.TaskCounts:
        finals = [counts for counts in self.seen if counts.final]
        assert len(finals) == 1, self.seen
        assert self.seen[-1] is finals[0]
        return finals[0]


# ----------------------------------------------------------------------
# What is counted


async def test_the_display_counts_done_and_failed(v04_conn: flame.Connection) -> None:
    console, out = _terminal()
    session = await _session(v04_conn)
    inputs = [b"a", b"fail:x", b"b", b"c", b"fail:y", b"d", b"e"]
    progress = flame.Progress("resizing", console=console)
    with pytest.raises(flame.TaskFailures):
        await session.run_tasks(inputs, fail_fast=False, concurrency=3, progress=progress)
    frames = _frames(out)
    # The first frame, before any task, and the last: 7 done, 2 of them failed.
    assert frames[0].startswith("resizing") and "0/7" in frames[0] and "0 failed" in frames[0]
    assert "7/7" in frames[-1] and "2 failed" in frames[-1], frames[-1]
    assert out.getvalue().rstrip("\n").endswith(SHOW_CURSOR)


async def test_a_callback_gets_the_counts_and_the_final_ones_once(
    v04_conn: flame.Connection,
) -> None:
    counts = _Counts()
    session = await _session(v04_conn)
    inputs = [b"a", b"fail:x", b"b", b"c"]
    progress = flame.Progress(callback=counts, interval=0.01)
    with pytest.raises(flame.TaskFailures):
        await session.run_tasks(inputs, fail_fast=False, progress=progress)
    final = counts.final
    assert (final.done, final.failed, final.total, final.succeeded) == (4, 1, 4, 3)
    assert final.rate > 0 and final.remaining == 0
    dones = [c.done for c in counts.seen]
    assert dones == sorted(dones), "the counts only grow"


async def test_an_async_callback_is_awaited(v04_conn: flame.Connection) -> None:
    seen: list[flame.TaskCounts] = []

    async def callback(counts: flame.TaskCounts) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(counts)

    session = await _session(v04_conn)
    await session.run_tasks([b"a", b"b"], progress=flame.Progress(callback=callback))
    assert seen[-1].final and seen[-1].done == 2 and seen[-1].failed == 0


async def test_fail_fast_counts_the_failure_that_stopped_the_run(
    v04_conn: flame.Connection,
) -> None:
    counts = _Counts()
    session = await _session(v04_conn)
    with pytest.raises(flame.FlameError, match="boom"):
        await session.run_tasks(
            [b"fail:boom", b"x"], concurrency=1, progress=flame.Progress(callback=counts)
        )
    final = counts.final
    # The failure is counted; the input after it was never taken.
    assert (final.done, final.failed, final.total) == (1, 1, 2)
    assert final.remaining is not None


async def test_a_generator_has_no_total_until_it_runs_out(v04_conn: flame.Connection) -> None:
    console, out = _terminal()
    counts = _Counts()
    session = await _session(v04_conn)
    await session.run_tasks(
        (b"x%d" % i for i in range(5)), progress=flame.Progress(callback=counts)
    )
    assert counts.final.total == 5 and counts.final.done == 5
    assert counts.final.remaining == 0
    await session.run_tasks(
        (b"x%d" % i for i in range(5)), progress=flame.Progress("gen", console=console)
    )
    frames = _frames(out)
    assert "0/?" in frames[0] and "ETA -:--:--" in frames[0]
    assert "5/5" in frames[-1]


async def test_a_total_given_for_a_generator_is_shown(v04_conn: flame.Connection) -> None:
    console, out = _terminal()
    session = await _session(v04_conn)
    progress = flame.Progress(total=3, console=console)
    await session.run_tasks((b"x" for _ in range(3)), progress=progress)
    frames = _frames(out)
    assert frames[0].startswith("tasks") and "0/3" in frames[0]
    assert "3/3" in frames[-1]


async def test_as_completed_shows_progress_for_its_block(v04_conn: flame.Connection) -> None:
    console, out = _terminal()
    session = await _session(v04_conn)
    taken = 0
    progress = flame.Progress("streamed", console=console)
    async with session.as_completed([b"a", b"b", b"c"], progress=progress) as finished:
        async for _task in finished:
            taken += 1
    assert taken == 3
    assert "3/3" in _frames(out)[-1]
    assert out.getvalue().rstrip("\n").endswith(SHOW_CURSOR)


# ----------------------------------------------------------------------
# Where it is drawn


class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_true_draws_on_stderr_when_it_is_a_terminal(
    v04_conn: flame.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = _FakeTerminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    session = await _session(v04_conn)
    await session.run_tasks([b"a", b"b"], progress=True)
    await session.run_tasks([b"a"], progress="labelled")
    text = ESCAPES.sub("", stderr.getvalue())
    assert "2/2" in text and "tasks" in text
    assert "1/1" in text and "labelled" in text


async def test_nothing_is_drawn_when_stderr_is_not_a_terminal(
    v04_conn: flame.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not sys.stderr.isatty()
    console = rich.console.Console(file=io.StringIO())  # not a terminal either
    session = await _session(v04_conn)
    await session.run_tasks([b"a", b"b"], progress=True)
    async with session.as_completed([b"a"], progress="x") as finished:
        assert [task.output async for task in finished]
    await session.run_tasks([b"a"], progress=flame.Progress(console=console))
    assert capsys.readouterr().err == ""
    assert console.file.getvalue() == ""  # type: ignore[attr-defined]


async def test_a_display_of_the_callers_own_gets_one_row_per_run(
    v04_conn: flame.Connection,
) -> None:
    console, out = _terminal()
    display = rich.progress.Progress(console=console, auto_refresh=False)
    session = await _session(v04_conn)
    threads = _threads()
    with display:
        async with anyio.create_task_group() as group:
            group.start_soon(_run, session, [b"a", b"b"], flame.Progress("one", display=display))
            two = flame.Progress("two", display=display)
            group.start_soon(_run, session, [b"c", b"d", b"e"], two)
        # The runs leave the display started: it is the caller's.
        assert display.live.is_started
        rows = {task.description: task for task in display.tasks}
        assert set(rows) == {"one", "two"}
        assert (rows["one"].completed, rows["one"].total) == (2, 2)
        assert (rows["two"].completed, rows["two"].total) == (3, 3)
        assert all(task.finished for task in display.tasks)
    assert _threads() == threads
    assert "one" in out.getvalue() and "two" in out.getvalue()


async def _run(session: flame.Session, inputs: list[bytes], progress: flame.Progress) -> None:
    await session.run_tasks(inputs, progress=progress)


# ----------------------------------------------------------------------
# Lifetimes: nothing outlives the call


@pytest.mark.parametrize("way", ["run_tasks", "as_completed"])
async def test_cancelling_mid_run_closes_the_display_and_leaves_no_thread(
    v04: V04Server, way: str
) -> None:
    threads = _threads()
    console, out = _terminal()
    async with await flame.connect(v04.endpoint) as conn:
        baseline = await _loop_tasks(conn)
        session = await _session(conn)
        progress = flame.Progress("held", console=console)

        async def run() -> None:
            if way == "run_tasks":
                await session.run_tasks([b"hold"] * 5, concurrency=3, progress=progress)
            else:
                run = session.as_completed([b"hold"] * 5, concurrency=3, progress=progress)
                async with run as finished:
                    async for _task in finished:
                        pass

        async with anyio.create_task_group() as group:
            group.start_soon(run)
            # Three tasks in flight, none finished: cancel the call.
            await v04.wait_for_watches(3)
            assert "0/5" in _frames(out)[0]
            group.cancel_scope.cancel()
        # No thread was started for drawing; the display was stopped (the
        # cursor shown again), its last frame where the run stopped.
        assert _threads() == threads
        assert out.getvalue().rstrip("\n").endswith(SHOW_CURSOR)
        assert "held" in _frames(out)[-1] and "0/5" in _frames(out)[-1]
        await v04.wait_for_watches(0)
        await v04.release()
        await _settle(conn, baseline)


async def test_leaving_as_completed_early_closes_the_display(v04_conn: flame.Connection) -> None:
    console, out = _terminal()
    session = await _session(v04_conn)
    progress = flame.Progress(console=console)
    async with session.as_completed([b"a"] + [b"hold"] * 3, progress=progress) as finished:
        async for _task in finished:
            break
    assert out.getvalue().rstrip("\n").endswith(SHOW_CURSOR)
    assert "1/4" in _frames(out)[-1]


async def test_a_callback_that_raises_stops_the_run(v04_conn: flame.Connection) -> None:
    class Boom(Exception):
        pass

    def callback(counts: flame.TaskCounts) -> None:
        raise Boom

    session = await _session(v04_conn)
    with pytest.raises(Boom):
        await session.run_tasks([b"hold"] * 3, progress=flame.Progress(callback=callback))


# ----------------------------------------------------------------------
# Refused options


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda: 1, "progress must be True, a description"),
        (lambda: flame.Progress(total=-1), "total must be a number of inputs"),
        (lambda: flame.Progress(interval=0), "interval must be a number of seconds"),
        (lambda: flame.Progress(callback=print, display=object()), "one of console, display"),  # type: ignore[arg-type]
        (lambda: flame.Progress(callback="print"), "callback must be callable"),  # type: ignore[arg-type]
        (lambda: flame.Progress(display=object()), "must be a rich.progress.Progress"),  # type: ignore[arg-type]
        (lambda: flame.Progress(3), "description must be a str"),  # type: ignore[arg-type]
    ],
)
async def test_a_bad_progress_option_is_refused_before_any_call(
    v04: V04Server, anyio_backend: str, make: Any, said: str
) -> None:
    async with await flame.connect(v04.endpoint) as conn:
        session = await _session(conn)
        before = list(await v04.on_loop(lambda: list(v04.frontend.calls)))
        with pytest.raises(flame.FlameError) as caught:
            await session.run_tasks([b"a"], progress=make())
        assert caught.value.code is flame.FlameErrorCode.INVALID_ARGUMENT
        assert said in caught.value.message
        assert list(await v04.on_loop(lambda: list(v04.frontend.calls))) == before


def test_an_option_resolves_to_a_progress_with_the_inputs_length() -> None:
    from flame._progress import resolve

    assert resolve(None, [b"a"]) is None
    assert resolve(False, [b"a"]) is None
    assert resolve(True, [b"a", b"b"]) == flame.Progress(total=2)
    assert resolve("x", range(7)) == flame.Progress("x", total=7)
    assert resolve("x", iter(range(7))) == flame.Progress("x")
    assert resolve(flame.Progress(total=3), [b"a"]) == flame.Progress(total=3)
