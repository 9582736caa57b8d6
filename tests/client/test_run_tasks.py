"""Many tasks in one call: run_tasks and as_completed.

Against the embedded cluster for real task runs, and against the v0.4-faithful
server where a test needs to hold tasks at will (``b"hold"`` runs until
released) or make them fail (``b"fail:<text>"``), or to see which calls were
made. Cancellation is checked as in test_cancellation: the server's watch
handlers have ended, the grpc loop's tasks and the process's threads are back
to what they were.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from v04_server import V04Server

import flame
from flame.local import LocalCluster

from .test_cancellation import _all_done, _loop_tasks, _settle, _threads

# ----------------------------------------------------------------------
# Helpers


async def _shell_session(conn: flame.Connection) -> flame.Session:
    await conn.register_application("sh", {"shim": flame.Shim.SHELL})
    return await conn.create_session(flame.SessionAttributes(application="sh"))


async def _v04_session(conn: flame.Connection) -> flame.Session:
    await conn.register_application("app", {"shim": flame.Shim.SHELL})
    return await conn.create_session(flame.SessionAttributes(application="app"))


async def _calls(v04: V04Server) -> list[str]:
    return list(await v04.on_loop(lambda: list(v04.frontend.calls)))


class _Recorder(flame.TaskInformer):
    """Keeps what it is told; async or plain, as asked."""

    def __init__(self, use_async: bool = False) -> None:
        self.updates: list[tuple[str, flame.TaskState]] = []
        self.errors: list[flame.FlameError] = []
        self.use_async = use_async

    def on_update(self, task: flame.Task) -> Any:
        if self.use_async:

            async def later() -> None:
                await anyio.lowlevel.checkpoint()
                self.updates.append((task.id, task.state))

            return later()
        self.updates.append((task.id, task.state))
        return None

    def on_error(self, error: flame.FlameError) -> None:
        self.errors.append(error)

    def states_of(self, task_id: str) -> list[flame.TaskState]:
        return [state for tid, state in self.updates if tid == task_id]


class _Counted:
    """An input generator that records how far it has been read."""

    def __init__(self, items: list[bytes]) -> None:
        self.items = items
        self.taken = 0

    def __iter__(self) -> Iterator[bytes]:
        for item in self.items:
            self.taken += 1
            yield item

    async def aiter(self) -> AsyncIterator[bytes]:
        for item in self.items:
            await anyio.lowlevel.checkpoint()
            self.taken += 1
            yield item


# ----------------------------------------------------------------------
# Results and order


async def test_results_come_in_input_order(conn: flame.Connection) -> None:
    session = await _shell_session(conn)
    # The first task finishes last, yet comes first.
    inputs = [b"sleep 0.3; echo 0"] + [f"echo {i}".encode() for i in range(1, 8)]
    tasks = await session.run_tasks(inputs, concurrency=4)
    assert [task.output for task in tasks] == [f"{i}\n".encode() for i in range(8)]
    assert all(task.state is flame.TaskState.SUCCEED for task in tasks)
    assert [task.input for task in tasks] == inputs


async def test_many_inputs_in_order_from_a_generator(v04_conn: flame.Connection) -> None:
    session = await _v04_session(v04_conn)
    inputs = (f"n{i}".encode() for i in range(300))
    tasks = await session.run_tasks(inputs, concurrency=16)
    assert [task.output for task in tasks] == [f"n{i}".encode() for i in range(300)]
    assert len({task.id for task in tasks}) == 300


async def test_async_iterable_and_bytearray_inputs(v04_conn: flame.Connection) -> None:
    session = await _v04_session(v04_conn)

    async def inputs() -> AsyncIterator[Any]:
        for i in range(5):
            yield bytearray(f"a{i}".encode())

    tasks = await session.run_tasks(inputs(), concurrency=2)
    assert [task.output for task in tasks] == [f"a{i}".encode() for i in range(5)]


async def test_no_inputs_no_calls(v04: V04Server, v04_conn: flame.Connection) -> None:
    session = await _v04_session(v04_conn)
    before = await _calls(v04)
    assert await session.run_tasks([]) == []
    async with session.as_completed(iter(())) as finished:
        assert [task async for task in finished] == []
    assert await _calls(v04) == before


async def test_as_completed_hands_tasks_over_as_they_finish(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    session = await _v04_session(v04_conn)
    inputs = [b"hold", b"x1", b"x2", b"x3"]
    seen: list[bytes | None] = []
    async with session.as_completed(inputs, concurrency=4) as finished:
        async for task in finished:
            seen.append(task.output)
            if len(seen) == 3:
                # Everything but the held task is done: let it finish.
                await v04.wait_for_watches(1)
                await v04.release()
    assert sorted(seen[:3]) == [b"x1", b"x2", b"x3"]
    assert seen[3] == b"hold"


async def test_as_completed_against_the_embedded_cluster(conn: flame.Connection) -> None:
    session = await _shell_session(conn)
    outputs = set()
    async with session.as_completed(
        (f"echo {i}".encode() for i in range(10)), concurrency=3
    ) as finished:
        async for task in finished:
            assert task.state is flame.TaskState.SUCCEED
            outputs.add(task.output)
        assert finished.taken == 10
    assert outputs == {f"{i}\n".encode() for i in range(10)}


# ----------------------------------------------------------------------
# Failures


async def test_fail_fast_raises_the_first_failure_and_cancels_the_rest(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    session = await _v04_session(v04_conn)
    inputs = _Counted([b"hold", b"hold", b"fail:boom"] + [b"hold"] * 20)
    with pytest.raises(flame.FlameError) as caught:
        await session.run_tasks(iter(inputs), concurrency=3)
    error = caught.value
    assert type(error) is flame.FlameError  # not a group, not TaskFailures
    assert error.code is flame.FlameErrorCode.INTERNAL
    assert "boom" in error.message
    # The failure carries its task, whole.
    assert error.task is not None and error.task.state is flame.TaskState.FAILED
    assert error.task.output == b"boom" and error.task.completion_time is not None
    # The held tasks' watches were cancelled, and no further input was taken.
    await v04.wait_for_watches(0)
    assert inputs.taken == 3
    await v04.release()
    await _all_done(v04_conn, session)


async def test_fail_fast_in_as_completed(v04: V04Server, v04_conn: flame.Connection) -> None:
    session = await _v04_session(v04_conn)
    seen: list[bytes | None] = []
    with pytest.raises(flame.FlameError) as caught:
        async with session.as_completed([b"a", b"hold", b"fail:bad"], concurrency=1) as finished:
            async for task in finished:
                seen.append(task.output)
                if task.output == b"a":
                    # The next one is held: let it end.
                    await v04.wait_for_watches(1)
                    await v04.release()
    assert type(caught.value) is flame.FlameError
    assert "bad" in caught.value.message
    assert caught.value.task is not None and caught.value.task.output == b"bad"
    assert seen == [b"a", b"hold"]


async def test_collect_mode_runs_everything_and_reports_together(
    v04_conn: flame.Connection,
) -> None:
    session = await _v04_session(v04_conn)
    inputs = [b"a", b"fail:one", b"b", b"fail:two", b"c"]
    informer = _Recorder()
    with pytest.raises(flame.TaskFailures) as caught:
        await session.run_tasks(inputs, informer=informer, concurrency=2, fail_fast=False)
    error = caught.value
    assert isinstance(error, flame.FlameError)
    assert error.code is flame.FlameErrorCode.INTERNAL
    assert error.total == 5
    assert sorted(failure.index for failure in error.failures) == [1, 3]
    by_index = {failure.index: failure for failure in error.failures}
    assert by_index[1].task is not None and by_index[1].task.output == b"one"
    assert all(failure.error.task is failure.task for failure in error.failures)
    assert "two" in by_index[3].error.message
    assert error.tasks is not None
    assert [task.state if task else None for task in error.tasks] == [
        flame.TaskState.SUCCEED,
        flame.TaskState.FAILED,
        flame.TaskState.SUCCEED,
        flame.TaskState.FAILED,
        flame.TaskState.SUCCEED,
    ]
    assert [task.output for task in error.tasks if task] == [b"a", b"one", b"b", b"two", b"c"]
    # The informer heard of each failure.
    assert sorted(e.message for e in informer.errors) == sorted(
        f.error.message for f in error.failures
    )
    again = pickle.loads(pickle.dumps(error))
    assert again.message == error.message and len(again.failures) == 2


async def test_collect_mode_in_as_completed(v04_conn: flame.Connection) -> None:
    session = await _v04_session(v04_conn)
    seen: list[flame.TaskState] = []
    with pytest.raises(flame.TaskFailures) as caught:
        async with session.as_completed(
            [b"a", b"fail:x", b"b"], concurrency=1, fail_fast=False
        ) as finished:
            async for task in finished:
                seen.append(task.state)
    # FAILED tasks are handed over too; the report comes at the end.
    assert seen == [flame.TaskState.SUCCEED, flame.TaskState.FAILED, flame.TaskState.SUCCEED]
    assert [failure.index for failure in caught.value.failures] == [1]
    assert caught.value.tasks is None


async def test_collect_mode_keeps_errors_without_a_task(conn: flame.Connection) -> None:
    session = await _shell_session(conn)

    def inputs() -> Iterator[Any]:
        yield b"echo ok"
        yield "not bytes"  # refused locally, without a call
        yield b"exit 3"

    with pytest.raises(flame.TaskFailures) as caught:
        await session.run_tasks(inputs(), concurrency=1, fail_fast=False)
    failures = {failure.index: failure for failure in caught.value.failures}
    assert failures[1].error.code is flame.FlameErrorCode.INVALID_ARGUMENT
    assert failures[1].task is None and failures[1].error.task is None
    assert failures[2].task is not None and failures[2].task.state is flame.TaskState.FAILED
    assert caught.value.code is flame.FlameErrorCode.INTERNAL  # codes differ
    assert caught.value.tasks is not None and caught.value.tasks[1] is None


async def test_a_refused_call_is_a_failure(v04_conn: flame.Connection) -> None:
    session = await _v04_session(v04_conn)
    await session.close()
    with pytest.raises(flame.FlameError) as caught:
        await session.run_tasks([b"a", b"b"])
    # v0.4 refuses a task on a closed session with UNKNOWN "unknown".
    assert caught.value.code is flame.FlameErrorCode.INVALID_STATE


# ----------------------------------------------------------------------
# Lazy consumption and memory


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_inputs_are_taken_only_as_tasks_finish(
    v04: V04Server, v04_conn: flame.Connection, kind: str
) -> None:
    session = await _v04_session(v04_conn)
    inputs = _Counted([b"hold"] * 10)
    source = iter(inputs) if kind == "sync" else inputs.aiter()
    done = 0
    async with anyio.create_task_group() as group:

        async def consume() -> None:
            nonlocal done
            async with session.as_completed(source, concurrency=3) as finished:
                async for _ in finished:
                    done += 1

        group.start_soon(consume)
        await v04.wait_for_watches(3)
        # Three in flight, none finished: exactly three inputs read.
        assert inputs.taken == 3
        await anyio.sleep(0.05)
        assert inputs.taken == 3
        with anyio.fail_after(20):
            while done < 10:  # polled: the held tasks end only when released
                await v04.release()
                await anyio.sleep(0.01)
                # Each input read is held by one of the three workers, or
                # handed over (one of them perhaps not yet counted by the body).
                assert inputs.taken <= done + 3 + 1
    assert inputs.taken == 10


async def test_never_more_than_concurrency_ahead_of_finished(conn: flame.Connection) -> None:
    session = await _shell_session(conn)
    finished_count = 0
    ahead: list[int] = []

    def inputs() -> Iterator[bytes]:
        for i in range(40):
            ahead.append(i - finished_count)
            yield b"true"

    async with session.as_completed(inputs(), concurrency=4) as finished:
        async for _ in finished:
            finished_count += 1
    assert finished_count == 40
    # When input i is read, the worker reading it is free: at most three
    # others are in flight (or finished, waiting for the body), and one more
    # may have been handed to the body, which has not counted it yet.
    assert max(ahead) <= 3 + 1


async def test_a_slow_body_holds_back_the_inputs(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    session = await _v04_session(v04_conn)
    inputs = _Counted([b"quick"] * 20)
    async with session.as_completed(iter(inputs), concurrency=2) as finished:
        first = await finished.__anext__()
        assert first.output == b"quick"
        await anyio.sleep(0.1)  # everything in flight has finished by now
        # Two finished tasks wait for the body; no third input was read.
        assert inputs.taken <= 1 + 2
        rest = [task async for task in finished]
    assert len(rest) == 19


# ----------------------------------------------------------------------
# Informers


@pytest.mark.parametrize("use_async", [False, True], ids=["plain", "async"])
async def test_informer_sees_each_task_in_order(conn: flame.Connection, use_async: bool) -> None:
    session = await _shell_session(conn)
    informer = _Recorder(use_async)
    tasks = await session.run_tasks(
        [f"echo {i}".encode() for i in range(12)], informer=informer, concurrency=5
    )
    assert informer.errors == []
    for task in tasks:
        states = informer.states_of(task.id)
        assert states[0] is flame.TaskState.PENDING
        assert states[-1] is flame.TaskState.SUCCEED
        # Each state once, in the order a task goes through them.
        assert states == sorted(set(states))


async def test_informer_on_v04_without_current_state_first(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    session = await _v04_session(v04_conn)
    informer = _Recorder()
    tasks: list[flame.Task] = []
    async with anyio.create_task_group() as group:

        async def run() -> None:
            tasks.extend(await session.run_tasks([b"steps", b"now"], informer=informer))

        group.start_soon(run)
        with anyio.fail_after(20):
            await v04.wait_for_watches(1)  # "now" is done; "steps" waits, pending
            await v04.release()
            # Polled: the informer hears of RUNNING through the watch.
            while flame.TaskState.RUNNING not in informer.states_of("1"):  # noqa: ASYNC110
                await anyio.sleep(0.01)
            await v04.release()
    assert [task.output for task in tasks] == [b"steps", b"now"]
    assert informer.states_of(tasks[0].id) == [
        flame.TaskState.PENDING,
        flame.TaskState.RUNNING,
        flame.TaskState.SUCCEED,
    ]
    assert informer.states_of(tasks[1].id)[0] is flame.TaskState.PENDING
    assert informer.states_of(tasks[1].id)[-1] is flame.TaskState.SUCCEED
    assert informer.errors == []


async def test_fail_fast_tells_the_informer_once(v04_conn: flame.Connection) -> None:
    session = await _v04_session(v04_conn)
    informer = _Recorder()
    with pytest.raises(flame.FlameError) as caught:
        await session.run_tasks([b"fail:x"], informer=informer)
    assert informer.errors == [caught.value]
    assert [state for _, state in informer.updates] == [
        flame.TaskState.PENDING,
        flame.TaskState.FAILED,
    ]


async def test_informer_exception_propagates_as_it_is(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    session = await _v04_session(v04_conn)

    class Broken(flame.TaskInformer):
        def on_update(self, task: flame.Task) -> None:
            raise KeyError(task.id)

    with pytest.raises(KeyError):
        await session.run_tasks([b"hold"] * 4, informer=Broken(), concurrency=4)
    await v04.wait_for_watches(0)
    await v04.release()
    await _all_done(v04_conn, session)


async def test_input_iterator_exception_propagates_as_it_is(v04_conn: flame.Connection) -> None:
    session = await _v04_session(v04_conn)

    def inputs() -> Iterator[bytes]:
        yield b"a"
        raise LookupError("no more")

    with pytest.raises(LookupError, match="no more"):
        await session.run_tasks(inputs())


async def test_body_exception_propagates_as_it_is(
    v04: V04Server, v04_conn: flame.Connection
) -> None:
    session = await _v04_session(v04_conn)
    with pytest.raises(ZeroDivisionError):
        async with session.as_completed([b"a", b"hold", b"hold"], concurrency=3) as finished:
            async for _ in finished:
                raise ZeroDivisionError
    await v04.wait_for_watches(0)
    await v04.release()
    await _all_done(v04_conn, session)


# ----------------------------------------------------------------------
# Arguments


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"inputs": [b"a"], "concurrency": 0}, "concurrency is 0"),
        ({"inputs": [b"a"], "concurrency": 2.5}, "concurrency must be an int"),
        ({"inputs": b"abc"}, "one bytes object"),
        ({"inputs": "abc"}, "one str object"),
        ({"inputs": 42}, "iterable of bytes"),
        ({"inputs": [b"a", "b"]}, "input 1 of inputs must be bytes"),
        ({"inputs": [b"a"], "informer": object()}, "has no on_update"),
    ],
)
async def test_bad_arguments_are_refused_before_any_call(
    v04: V04Server, v04_conn: flame.Connection, kwargs: dict[str, Any], words: str
) -> None:
    session = await _v04_session(v04_conn)
    before = await _calls(v04)
    with pytest.raises(flame.FlameError) as caught:
        await session.run_tasks(**kwargs)
    assert caught.value.code is flame.FlameErrorCode.INVALID_ARGUMENT
    assert words in caught.value.message
    with pytest.raises(flame.FlameError) as again:
        session.as_completed(**kwargs)  # refused when called, not when entered
    assert again.value.message == caught.value.message
    assert await _calls(v04) == before


# ----------------------------------------------------------------------
# Cancellation from outside


async def _run_list(session: flame.SessionClient) -> None:
    await session.run_tasks([b"hold"] * 10, concurrency=3)


async def _run_informed(session: flame.SessionClient) -> None:
    await session.run_tasks([b"hold"] * 10, concurrency=3, informer=_Recorder(use_async=True))


async def _run_iterated(session: flame.SessionClient) -> None:
    async with session.as_completed((b"hold" for _ in range(10)), concurrency=3) as finished:
        async for _ in finished:
            pass


WAYS = {"run_tasks": _run_list, "informer": _run_informed, "as_completed": _run_iterated}


@pytest.mark.parametrize("way", list(WAYS))
async def test_cancel_from_outside_leaves_nothing(v04: V04Server, way: str) -> None:
    threads = _threads()
    async with await flame.connect(v04.endpoint) as conn:
        session = await _v04_session(conn)
        baseline = await _loop_tasks(conn)
        async with anyio.create_task_group() as group:
            group.start_soon(WAYS[way], session)
            await v04.wait_for_watches(3)
            group.cancel_scope.cancel()
        # Every watch in flight was closed, and nothing more was created.
        await v04.wait_for_watches(0)
        tasks = await v04.on_loop(lambda: len(v04.frontend.sessions[int(session.id)].tasks))
        assert tasks == 3
        await v04.release()
        await _all_done(conn, session)
        await _settle(conn, baseline)
    assert _threads() == threads


@pytest.mark.parametrize("way", ["run_tasks", "as_completed"])
async def test_cancel_against_the_embedded_cluster(anyio_backend: str, way: str) -> None:
    threads = _threads()
    tasks = set(asyncio.all_tasks()) if anyio_backend == "asyncio" else set()
    async with LocalCluster(slots=1) as cluster, await flame.connect(cluster.endpoint) as conn:
        session = await _shell_session(conn)
        with anyio.move_on_after(0.3) as scope:
            if way == "run_tasks":
                await session.run_tasks([b"sleep 30"] * 5, concurrency=2)
            else:
                async with session.as_completed([b"sleep 30"] * 5, concurrency=2) as finished:
                    async for _ in finished:
                        pass
        assert scope.cancelled_caught
        # The connection goes on serving after the cancellation.
        assert (await session.get_task("1")).state is flame.TaskState.RUNNING
    # Cluster and connection closed: no thread, and under asyncio no task, is
    # left. asyncio reaps the killed shell children in threads of its own,
    # which end a moment later: wait for them.
    with anyio.fail_after(20):
        while _threads() != threads:  # noqa: ASYNC110 - threads set no events
            await anyio.sleep(0.01)
    if anyio_backend == "asyncio":
        assert asyncio.all_tasks() == tasks
