"""Threads: shared connections, a caller inside a running event loop, the portal's own thread.

The connection's thread must end when the connection is closed (or dropped
unclosed), and what is dropped mid-way (a watch left by ``break``, an
``as_completed`` never left) must be closed by the async code's own rules.
"""

from __future__ import annotations

import gc
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import flame
import flame.sync
from flame import FlameError, FlameErrorCode, Shim, TaskState
from flame.local import LocalCluster

from .conftest import ThreadedV04, thread_count, wait_until


def _session(conn: flame.sync.Connection, name: str = "sh") -> flame.sync.Session:
    conn.register_application(name, {"shim": Shim.SHELL})
    return conn.create_session(flame.SessionAttributes(application=name))


def test_threads_share_one_connection(cluster: LocalCluster, backend: str) -> None:
    with flame.sync.connect(cluster.endpoint, backend=backend) as conn:
        session = _session(conn)

        def work(n: int) -> list[bytes | None]:
            # Every kind of call, from eight threads at once.
            mine = conn.session_client(session.id)
            outputs = [task.output for task in mine.run_tasks([b"echo %d" % n] * 5)]
            with mine.as_completed([b"echo %d" % n] * 3) as finished:
                outputs += [task.output for task in finished]
            created = mine.create_task(b"echo %d" % n)
            outputs += [update.output for update in mine.watch_task(created.id)][-1:]
            outputs.append(mine.run_task(b"echo %d" % n).output)
            return outputs

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(8)))
        for n, outputs in enumerate(results):
            assert outputs == [b"%d\n" % n] * 10
        assert conn.get_session(session.id).succeed == 8 * 10


async def test_blocking_calls_from_inside_a_running_event_loop(cluster: LocalCluster) -> None:
    # As in a notebook: the calling thread runs an event loop (asyncio or
    # trio, by anyio_backend), and the blocking API is called from a coroutine.
    before = thread_count()
    with flame.sync.connect(cluster.endpoint) as conn:
        session = _session(conn)
        assert session.run_task(b"echo loop").output == b"loop\n"
        tasks = session.run_tasks(b"echo %d" % i for i in range(10))
        assert [task.output for task in tasks] == [b"%d\n" % i for i in range(10)]
        with session.as_completed([b"echo a", b"echo b"]) as finished:
            assert sorted(task.output or b"" for task in finished) == [b"a\n", b"b\n"]
        created = session.create_task(b"echo w")
        assert [u.state for u in session.watch_task(created.id)][-1] is TaskState.SUCCEED
    assert thread_count() == before


def test_closing_ends_the_thread(cluster: LocalCluster, backend: str) -> None:
    before = thread_count()
    conn = flame.sync.connect(cluster.endpoint, backend=backend)
    assert thread_count() > before
    session = _session(conn)
    session.run_tasks([b"true"] * 5)
    conn.close()
    assert thread_count() == before
    with pytest.raises(FlameError) as caught:
        session.run_task(b"true")
    assert caught.value.code is FlameErrorCode.INVALID_STATE
    # The same for a connection that never connected.
    with pytest.raises(FlameError):
        flame.sync.connect("http://127.0.0.1:1", backend=backend, connect_timeout=2)
    assert thread_count() == before


def test_a_dropped_connection_ends_its_thread(cluster: LocalCluster, backend: str) -> None:
    before = thread_count()
    conn = flame.sync.connect(cluster.endpoint, backend=backend)
    session = _session(conn)
    assert session.run_task(b"echo x").output == b"x\n"
    del conn, session
    gc.collect()
    wait_until(lambda: thread_count() == before, "the dropped connection's thread to end")


def test_closing_from_another_thread_fails_the_calls_in_flight(
    v04: ThreadedV04, backend: str
) -> None:
    before = thread_count()
    conn = flame.sync.connect(v04.endpoint, backend=backend)
    session = _session(conn)
    closer = threading.Thread(target=lambda: (v04.wait_for_watches(2), conn.close()))
    closer.start()
    with pytest.raises(FlameError) as caught:
        session.run_tasks([b"hold"] * 2)
    closer.join()
    assert caught.value.code in (FlameErrorCode.UNAVAILABLE, FlameErrorCode.INVALID_STATE)
    assert thread_count() == before
    v04.wait_for_watches(0)
    v04.release()


def test_a_watch_left_by_break_is_closed(v04: ThreadedV04, v04_conn: flame.sync.Connection) -> None:
    session = _session(v04_conn)
    steps = session.create_task(b"steps")  # pending until a release, then running
    releaser = threading.Thread(target=lambda: (v04.wait_for_watches(1), v04.release()))
    releaser.start()
    for update in session.watch_task(steps.id):
        assert update.state is TaskState.RUNNING
        break
    releaser.join()
    # Nothing was closed by hand: dropping the watcher closed its stream.
    v04.wait_for_watches(0)
    assert session.get_task(steps.id).state is TaskState.RUNNING
    v04.release()


def test_an_as_completed_never_left_is_cancelled_when_dropped(
    v04: ThreadedV04, v04_conn: flame.sync.Connection
) -> None:
    session = _session(v04_conn)
    run = session.as_completed([b"hold"] * 3 + [b"quick"], concurrency=4)
    finished = run.__enter__()
    assert next(finished).output == b"quick"
    v04.wait_for_watches(3)
    del run, finished
    gc.collect()
    # The held tasks' watches were closed by the run's own cancellation.
    v04.wait_for_watches(0)
    v04.release()
    assert session.run_task(b"after").output == b"after"


def test_a_blocking_call_on_the_connections_own_loop_is_refused(
    conn: flame.sync.Connection,
) -> None:
    session = _session(conn)

    class Blocking(flame.TaskInformer):
        # Awaited on the connection's loop: a blocking call there would wait for ever.
        async def on_update(self, task: flame.Task) -> None:
            conn.list_sessions()

    with pytest.raises(FlameError) as caught:
        session.run_task(b"true", Blocking())
    assert caught.value.code is FlameErrorCode.INVALID_STATE
    assert "use the async API there" in caught.value.message
    assert session.run_task(b"echo fine").output == b"fine\n"


def test_importing_starts_no_thread_and_loads_no_grpc_client() -> None:
    import subprocess
    import sys

    code = (
        "import sys, threading, flame.sync; "
        "print(threading.active_count(), "
        "sorted(m for m in sys.modules if m.startswith('grpclib.client')))"
    )
    said = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert said.stdout.strip() == "1 []"
