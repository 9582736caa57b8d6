"""Ctrl-C during a blocking call: the async call is cancelled, then KeyboardInterrupt is raised.

A real SIGINT is sent to the main thread (where the tests run) once the
call is known to be blocked with tasks held by the v0.4-like server; or the
KeyboardInterrupt comes from the user's own code (the iterator of inputs,
an informer), in the calling thread. Each time: the KeyboardInterrupt
reaches the caller, the server's watch handlers have all ended (the
streams were closed), no further input was read, and the connection goes
on working.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import flame
import flame.sync
from flame import Shim, TaskState

from .conftest import ThreadedV04

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill"), reason="sends SIGINT to the main thread (POSIX)"
)


@pytest.fixture(autouse=True)
def _default_sigint() -> Iterator[None]:
    # Python's own handler, which raises KeyboardInterrupt in the main thread.
    assert threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _ctrl_c_once(condition: Callable[[], object]) -> threading.Thread:
    """Send SIGINT to the main thread once ``condition()`` has returned."""

    def press() -> None:
        condition()
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    thread = threading.Thread(target=press, daemon=True)
    thread.start()
    return thread


def _session(conn: flame.sync.Connection) -> flame.sync.Session:
    conn.register_application("app", {"shim": Shim.SHELL})
    return conn.create_session(flame.SessionAttributes(application="app"))


def _still_works(v04: ThreadedV04, session: flame.sync.Session, held: str = "1") -> None:
    # Nothing is left watching, the held tasks still run on the server, and
    # the connection carries new calls.
    v04.wait_for_watches(0)
    assert session.get_task(held).state is TaskState.RUNNING
    v04.release()
    assert session.run_task(b"after").output == b"after"
    assert [task.output for task in session.run_tasks([b"x", b"y"])] == [b"x", b"y"]


class _Counted:
    def __init__(self, items: list[bytes]) -> None:
        self.items = items
        self.taken = 0

    def __iter__(self) -> Iterator[bytes]:
        for item in self.items:
            self.taken += 1
            yield item


def test_ctrl_c_during_run_tasks(v04: ThreadedV04, v04_conn: flame.sync.Connection) -> None:
    session = _session(v04_conn)
    inputs = _Counted([b"hold"] * 10)
    presser = _ctrl_c_once(lambda: v04.wait_for_watches(3))
    with pytest.raises(KeyboardInterrupt):
        session.run_tasks(inputs, concurrency=3)
    presser.join()
    _still_works(v04, session)
    assert inputs.taken == 3


def test_ctrl_c_during_run_tasks_with_a_list_and_an_informer(
    v04: ThreadedV04, v04_conn: flame.sync.Connection
) -> None:
    session = _session(v04_conn)
    seen: list[TaskState] = []

    class Informer(flame.TaskInformer):
        def on_update(self, task: flame.Task) -> None:
            seen.append(task.state)

    def informed() -> None:
        # The watches open before their first update reaches the informer,
        # in this thread: press once it has been told something (or gave up
        # waiting, and the assertion below says so).
        v04.wait_for_watches(4)
        for _ in range(1000):
            if seen:
                return
            time.sleep(0.01)

    presser = _ctrl_c_once(informed)
    with pytest.raises(KeyboardInterrupt):
        session.run_tasks([b"hold"] * 4, informer=Informer(), concurrency=8)
    presser.join()
    _still_works(v04, session)
    assert TaskState.PENDING in seen


def test_keyboard_interrupt_from_the_inputs(
    v04: ThreadedV04, v04_conn: flame.sync.Connection
) -> None:
    session = _session(v04_conn)
    read_after: list[int] = []

    def inputs() -> Iterator[bytes]:
        yield from [b"hold"] * 3
        v04.wait_for_watches(3)
        raise KeyboardInterrupt
        read_after.append(1)  # never: the iterator is not resumed

    with pytest.raises(KeyboardInterrupt):
        session.run_tasks(inputs(), concurrency=4)
    _still_works(v04, session)
    assert read_after == []


def test_keyboard_interrupt_from_an_informer(
    v04: ThreadedV04, v04_conn: flame.sync.Connection
) -> None:
    session = _session(v04_conn)

    class Interrupting(flame.TaskInformer):
        def __init__(self, task_id: str | None) -> None:
            self.task_id = task_id

        def on_update(self, task: flame.Task) -> None:
            if self.task_id in (None, task.id):
                self.task_id = task.id
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        session.run_tasks([b"hold"] * 5, informer=Interrupting("3"), concurrency=3)
    _still_works(v04, session)
    informer = Interrupting(None)  # told of the created task
    with pytest.raises(KeyboardInterrupt):
        session.run_task(b"hold", informer)
    assert informer.task_id is not None
    _still_works(v04, session, informer.task_id)


def test_ctrl_c_during_run_task_and_watch_task(
    v04: ThreadedV04, v04_conn: flame.sync.Connection
) -> None:
    session = _session(v04_conn)
    presser = _ctrl_c_once(lambda: v04.wait_for_watches(1))
    with pytest.raises(KeyboardInterrupt):
        session.run_task(b"hold")
    presser.join()
    _still_works(v04, session)
    held = session.create_task(b"hold")
    presser = _ctrl_c_once(lambda: v04.wait_for_watches(1))
    watcher = session.watch_task(held.id)
    with pytest.raises(KeyboardInterrupt):
        for _ in watcher:
            pass
    presser.join()
    v04.wait_for_watches(0)
    assert list(watcher) == []  # closed
    v04.release()


def test_ctrl_c_during_as_completed(v04: ThreadedV04, v04_conn: flame.sync.Connection) -> None:
    session = _session(v04_conn)
    inputs = _Counted([b"quick"] + [b"hold"] * 10)
    got: list[bytes | None] = []
    presser = _ctrl_c_once(lambda: v04.wait_for_watches(3))
    with (
        pytest.raises(KeyboardInterrupt),
        session.as_completed(inputs, concurrency=3) as finished,
    ):
        for task in finished:
            got.append(task.output)
    presser.join()
    v04.wait_for_watches(0)
    assert got == [b"quick"] and inputs.taken == 4
    v04.release()
    assert session.run_task(b"after").output == b"after"


def test_keyboard_interrupt_in_the_body_of_as_completed(
    v04: ThreadedV04, v04_conn: flame.sync.Connection
) -> None:
    # Raised by the body, between two iterations: leaving the with cancels the run.
    session = _session(v04_conn)
    # A list is read on the connection's loop: all three run from the start.
    with (
        pytest.raises(KeyboardInterrupt),
        session.as_completed([b"hold", b"hold", b"quick"], concurrency=3) as finished,
    ):
        for task in finished:
            assert task.output == b"quick"
            v04.wait_for_watches(2)
            raise KeyboardInterrupt
    v04.wait_for_watches(0)
    v04.release()
    assert session.run_task(b"after").output == b"after"
