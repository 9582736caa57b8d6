"""Progress through the blocking API: the async API's ``progress=``, in the calling thread.

The display is drawn by the portal's loop; a progress callback runs in the
thread that made the call, as an informer does. The lengths of inputs the
blocking API wraps (to read them in the calling thread) are still totals.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator

import pytest
import rich.console

import flame
import flame.sync
from flame.local import LocalCluster

from .conftest import ThreadedV04

pytestmark = pytest.mark.usefixtures("plain_terminal")

SHOW_CURSOR = "\x1b[?25h"
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _terminal() -> tuple[rich.console.Console, io.StringIO]:
    out = io.StringIO()
    return rich.console.Console(file=out, force_terminal=True, width=150), out


def _frames(out: io.StringIO) -> list[str]:
    text = ESCAPES.sub("", out.getvalue())
    return [frame.strip() for frame in re.split(r"[\r\n]", text) if frame.strip()]


def _session(conn: flame.sync.Connection) -> flame.sync.Session:
    conn.register_application("app", {"shim": flame.Shim.SHELL})
    return conn.create_session(flame.SessionAttributes(application="app"))


def test_run_tasks_calls_back_in_the_calling_thread(v04_conn: flame.sync.Connection) -> None:
    seen: list[tuple[flame.TaskCounts, int]] = []
    session = _session(v04_conn)
    progress = flame.sync.Progress(
        callback=lambda counts: seen.append((counts, threading.get_ident())), interval=0.01
    )
    with pytest.raises(flame.TaskFailures):
        session.run_tasks([b"a", b"fail:x", b"b"], fail_fast=False, progress=progress)
    final, _ = seen[-1]
    assert final.final and (final.done, final.failed, final.total) == (3, 1, 3)
    assert {thread for _, thread in seen} == {threading.get_ident()}


def test_a_generator_read_here_has_its_total_once_it_ends(
    v04_conn: flame.sync.Connection,
) -> None:
    console, out = _terminal()
    session = _session(v04_conn)
    inputs = (b"x%d" % i for i in range(4))
    tasks = session.run_tasks(inputs, progress=flame.Progress(console=console))
    assert len(tasks) == 4
    frames = _frames(out)
    assert "0/?" in frames[0] and "4/4" in frames[-1]
    # A list keeps its length, though the blocking API hands it on.
    console, out = _terminal()
    two = flame.Progress("two", console=console)
    with session.as_completed([b"a", b"b"], progress=two) as done:
        assert len(list(done)) == 2
    frames = _frames(out)
    assert frames[0].startswith("two") and "0/2" in frames[0] and "2/2" in frames[-1]
    assert out.getvalue().rstrip("\n").endswith(SHOW_CURSOR)


def test_ctrl_c_from_the_inputs_closes_the_display(
    v04: ThreadedV04, v04_conn: flame.sync.Connection
) -> None:
    console, out = _terminal()
    session = _session(v04_conn)
    threads = threading.active_count()

    def inputs() -> Iterator[bytes]:
        yield b"hold"
        yield b"hold"
        v04.wait_for_watches(2)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        session.run_tasks(inputs(), progress=flame.Progress("held", console=console))
    assert out.getvalue().rstrip("\n").endswith(SHOW_CURSOR)
    assert "held" in _frames(out)[-1] and "0/?" in _frames(out)[-1]
    assert threading.active_count() == threads
    v04.wait_for_watches(0)
    v04.release()


def test_nothing_is_drawn_when_stderr_is_not_a_terminal(
    v04_conn: flame.sync.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    session = _session(v04_conn)
    assert len(session.run_tasks([b"a", b"b"], progress=True)) == 2
    assert capsys.readouterr().err == ""


def test_function_sessions_show_progress(cluster: LocalCluster, backend: str) -> None:
    console, out = _terminal()
    seen: list[flame.TaskCounts] = []

    def double(x: int) -> int:
        return 2 * x

    with (
        flame.sync.connect(cluster.endpoint, backend=backend) as conn,
        conn.function_session(double, slots=1) as f,
    ):
        assert f.map(range(3), progress=flame.Progress(console=console)) == [0, 2, 4]
        assert f.starmap([(1,), (2,)], progress=flame.Progress(callback=seen.append)) == [2, 4]
        with f.as_completed(iter(range(2)), progress=flame.Progress(callback=seen.append)) as got:
            assert sorted(value for _, value in got) == [0, 2]
    assert "double" in _frames(out)[-1] and "3/3" in _frames(out)[-1]
    finals = [counts for counts in seen if counts.final]
    assert [(c.done, c.total) for c in finals] == [(2, 2), (2, 2)]
