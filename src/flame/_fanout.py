"""Many tasks at once: the engine of ``run_tasks`` and ``as_completed``, and their failures.

:class:`FanOut` runs one task per input with at most ``concurrency`` in
flight, reading the inputs lazily, and hands each finished task to whoever
runs it: ``run_tasks`` keeps them in input order, ``as_completed``
(:func:`run_as_completed`) hands them over as they finish. Everything runs
in one task group; failures are recorded, never raised out of a worker, so a
caller never sees an exception group.
"""

from __future__ import annotations

import contextlib
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from typing import Any

import anyio
import anyio.lowlevel
import attrs

from ._errors import FlameError, FlameErrorCode
from ._informer import INFORMER_BUFFER, Informing, TaskInformer, check_informer, inform
from ._progress import ProgressOption, ProgressTracker, resolve
from ._types import Task, TaskInput, TaskState, _check_bytes, _invalid

__all__ = [
    "DEFAULT_CONCURRENCY",
    "FanOut",
    "FinishedTasks",
    "TaskFailure",
    "TaskFailures",
    "TaskInputs",
    "run_as_completed",
    "run_in_order",
    "task_failed",
]

DEFAULT_CONCURRENCY = 64
"""How many tasks :meth:`SessionClient.run_tasks` and :meth:`SessionClient.as_completed`
keep in flight unless told otherwise."""

TaskInputs = Iterable[TaskInput] | AsyncIterable[TaskInput]
"""What :meth:`SessionClient.run_tasks` takes: a list, or any (async) iterable, of inputs."""

#: Runs one task to its end: ``run(input, note)``, telling ``note`` (if any)
#: each new state of the task once, in order.
RunOne = Callable[[bytes, "Callable[[Task], Awaitable[None]] | None"], Awaitable[Task]]


def task_failed(task: Task) -> FlameError:
    """What a task that ended other than ``SUCCEED`` is raised as: INTERNAL, saying why.

    A ``FAILED`` task's message carries its output (the error the
    application reported), or else the message of its failure event; a
    ``CANCELLED`` one (v0.6) says its session was closed before it ran. The
    error carries the task (``error.task``): its id, whole output and
    completion time are not lost to the message's shortened text.
    """
    where = f"task {task.id} of session {task.session_id}"
    if task.state is TaskState.CANCELLED:
        return FlameError(
            FlameErrorCode.INTERNAL,
            f"{where} was cancelled: its session was closed before the task ran",
            task=task,
        )
    text = (task.output or b"").decode("utf-8", "replace").strip()
    if not text:
        failures = [e.message for e in task.events if e.code == TaskState.FAILED and e.message]
        text = failures[-1] if failures else ""
    if len(text) > 2000:
        text = text[:2000] + " [...]"
    return FlameError(
        FlameErrorCode.INTERNAL, f"{where} failed: {text or '(no output)'}", task=task
    )


@attrs.frozen
class TaskFailure:
    """One input of :meth:`SessionClient.run_tasks` (or ``as_completed``) that failed."""

    index: int
    """Where the input was among the inputs, counted from 0."""
    error: FlameError
    """Why: the task failed (its output is in the message), or a call was refused or lost."""
    task: Task | None = None
    """The ``FAILED`` or ``CANCELLED`` task; None when no task was created or seen to finish."""


class TaskFailures(FlameError):
    """Some inputs of a ``fail_fast=False`` run failed; the others ran to their end.

    ``failures`` lists each failed input, in the order they failed.
    ``tasks`` (from :meth:`SessionClient.run_tasks` only; None from
    ``as_completed``, which keeps no task) holds one place per input: the
    finished task, ``FAILED`` and ``CANCELLED`` ones included, or None where no task finished.
    The ``code`` is the failures' code when they all share one, else
    ``INTERNAL``.
    """

    failures: tuple[TaskFailure, ...]
    tasks: list[Task | None] | None
    total: int

    def __init__(
        self,
        failures: Sequence[TaskFailure],
        total: int,
        tasks: list[Task | None] | None = None,
    ) -> None:
        codes = {failure.error.code for failure in failures}
        code = codes.pop() if len(codes) == 1 else FlameErrorCode.INTERNAL
        first = failures[0] if failures else None
        said = f"; the first, input {first.index}: {first.error.message}" if first else ""
        super().__init__(code, f"{len(failures)} of {total} task(s) failed{said}")
        self.failures = tuple(failures)
        self.total = total
        self.tasks = tasks

    def __repr__(self) -> str:
        return f"TaskFailures({self.code.name}, {self.message!r})"

    def __reduce__(self) -> Any:
        return (type(self), (self.failures, self.total, self.tasks))


def _check_inputs(inputs: object) -> Iterator[Any] | AsyncIterator[Any]:
    if isinstance(inputs, (bytes, bytearray, memoryview, str)):
        raise _invalid(
            f"inputs is one {type(inputs).__name__} object; pass a list (or iterable) "
            "of inputs, such as [data]"
        )
    if isinstance(inputs, (list, tuple)):
        for index, data in enumerate(inputs):
            _check_bytes(data, f"input {index} of inputs")
    if isinstance(inputs, AsyncIterable):
        return inputs.__aiter__()
    if isinstance(inputs, Iterable):
        return iter(inputs)
    raise _invalid(
        f"inputs must be a list or an (async) iterable of bytes, not {type(inputs).__name__}"
    )


def _check_concurrency(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"concurrency must be an int, not {type(value).__name__}")
    if value < 1:
        raise _invalid(f"concurrency is {value}; let at least 1 task run at a time")
    return value


class FanOut:
    """Workers pulling inputs, one informer, and one progress tracker.

    Up to ``concurrency`` workers each take the next input, run its task
    with ``run``, and hand the finished task to ``deliver``; a worker is
    started only when all the others are busy, so a short input list starts
    few. Nothing here raises but a cancellation from outside: failures are
    recorded and :meth:`outcome` says what to raise. The arguments are
    checked when it is made, before any call. ``progress`` (see
    :func:`flame._progress.resolve`) is shown for the length of :meth:`run`
    and labelled ``description`` unless it says otherwise.
    """

    def __init__(
        self,
        run: RunOne,
        inputs: TaskInputs,
        informer: TaskInformer | None,
        concurrency: int,
        fail_fast: bool,
        progress: ProgressOption = None,
        description: str = "tasks",
    ) -> None:
        self._concurrency = _check_concurrency(concurrency)
        self._informer = check_informer(informer)
        iterator = _check_inputs(inputs)
        #: None unless progress is shown: the workers then count nothing.
        self._tracker = ProgressTracker.create(
            resolve(progress, inputs), description, lambda exc: self._stop(exc, raised=True)
        )
        self._run = run
        self._fail_fast = bool(fail_fast)
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterator[Any] | None = None
        if isinstance(iterator, AsyncIterator):
            self._async = iterator
        else:
            self._sync = iterator
        self._lock = anyio.Lock()
        self._exhausted = False
        #: How many inputs were taken; the next one's index.
        self.taken = 0
        self._workers = 0
        self._failures: list[TaskFailure] = []
        #: The first failure with fail_fast, raised after on_error has seen it.
        self._failure: FlameError | None = None
        #: An exception of the caller's own code (informer, inputs): raised as it is.
        self._raised: BaseException | None = None
        self._notes: Informing | None = None
        self._scope: anyio.CancelScope | None = None
        self._group: Any = None
        self._deliver: Callable[[int, Task], Awaitable[None]] | None = None
        self._ran = False

    async def run(self, deliver: Callable[[int, Task], Awaitable[None]]) -> None:
        """Run every input (or up to the first failure with fail_fast). Runs once."""
        if self._ran:
            raise FlameError(FlameErrorCode.INVALID_STATE, "these tasks have been run already")
        self._ran = True
        self._deliver = deliver
        informer = self._informer
        tracker = self._tracker
        if tracker is not None:
            tracker.open()
        try:
            async with anyio.create_task_group() as outer:
                if informer is not None:
                    self._notes = Informing(
                        informer,
                        max(INFORMER_BUFFER, self._concurrency),
                        lambda exc: self._stop(exc, raised=True),
                    )
                    outer.start_soon(self._notes.run)
                if tracker is not None:
                    outer.start_soon(tracker.tick)
                try:
                    async with anyio.create_task_group() as workers:
                        self._scope, self._group = workers.cancel_scope, workers
                        self._workers = 1
                        workers.start_soon(self._work)
                finally:
                    # The informer is told what is buffered, then ends.
                    if self._notes is not None:
                        self._notes.finish()
                    if tracker is not None:
                        tracker.stop_ticking()
        finally:
            # The display does not outlive the run, however it ends.
            if tracker is not None:
                await tracker.close()
        failure = self._failure
        if informer is not None and failure is not None and self._raised is None:
            try:
                await inform(informer.on_error, failure)
            except Exception as exc:
                self._raised = exc

    def outcome(self, tasks: list[Task | None] | None = None) -> BaseException | None:
        """What the run ends with: the exception to raise, or None if all went well."""
        if self._raised is not None:
            return self._raised
        if self._failure is not None:
            return self._failure
        if self._failures:
            return TaskFailures(self._failures, self.taken, tasks)
        return None

    def _stop(self, error: BaseException, *, raised: bool = False) -> None:
        if self._raised is None and self._failure is None:
            if raised or not isinstance(error, FlameError):
                self._raised = error
            else:
                self._failure = error
        if self._scope is not None:
            self._scope.cancel()

    async def _take(self) -> tuple[int, Any] | None:
        if self._exhausted or self._failure is not None or self._raised is not None:
            # Nothing more is read once the run is over.
            return None
        try:
            if self._sync is not None:
                data = next(self._sync)
            else:
                assert self._async is not None
                # Two workers must not advance one async generator at once.
                async with self._lock:
                    if self._exhausted:
                        return None
                    data = await self._async.__anext__()
        except (StopIteration, StopAsyncIteration):
            self._exhausted = True
            if self._tracker is not None:
                self._tracker.inputs_ended(self.taken)
            return None
        except Exception as exc:
            # The caller's iterable failed: its own error, as it is.
            self._exhausted = True
            self._stop(exc, raised=True)
            return None
        index = self.taken
        self.taken += 1
        return index, data

    async def _work(self) -> None:
        run = self._run
        notes = self._notes
        note = notes.update if notes is not None else None
        deliver = self._deliver
        assert deliver is not None
        tracker = self._tracker
        while True:
            taken = await self._take()
            if taken is None:
                return
            if self._workers < self._concurrency:
                # Every worker is busy: one more may take the next input.
                self._workers += 1
                self._group.start_soon(self._work)
            index, data = taken
            try:
                task = await run(_check_bytes(data, f"input {index} of inputs"), note)
            except FlameError as error:
                await self._failed(index, error, None)
                continue
            if task.state is not TaskState.SUCCEED:  # FAILED or CANCELLED
                await self._failed(index, task_failed(task), task)
            else:
                if tracker is not None:
                    tracker.finished(True)
                await deliver(index, task)

    async def _failed(self, index: int, error: FlameError, task: Task | None) -> None:
        if self._tracker is not None:
            self._tracker.finished(False)
        if self._fail_fast:
            self._stop(error)
            return
        self._failures.append(TaskFailure(index, error, task))
        if self._notes is not None:
            await self._notes.error(error)
        if task is not None:
            assert self._deliver is not None
            await self._deliver(index, task)


class FinishedTasks:
    """The tasks of :meth:`SessionClient.as_completed`, in the order they finish.

    An async iterator, used once, inside the ``async with`` that gave it.
    When every input has been run it ends, or raises the run's failure (see
    :meth:`SessionClient.as_completed`).
    """

    def __init__(self, receive: Any, fan_out: FanOut) -> None:
        self._receive = receive
        self._fan_out = fan_out
        self._ended = False

    @property
    def taken(self) -> int:
        """How many inputs have been taken so far (each one is, or was, a task)."""
        return self._fan_out.taken

    def __aiter__(self) -> FinishedTasks:
        return self

    async def __anext__(self) -> Task:
        if self._ended:
            raise StopAsyncIteration
        try:
            task: Task = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._ended = True
            outcome = self._fan_out.outcome()
            if outcome is not None:
                raise outcome from None
            raise StopAsyncIteration from None
        return task


async def run_in_order(fan_out: FanOut) -> list[Task]:
    """Run ``fan_out`` and return every task in input order; raise its outcome if any."""
    results: list[Task | None] = []

    async def keep(index: int, task: Task) -> None:
        while len(results) <= index:
            results.append(None)
        results[index] = task

    await fan_out.run(keep)
    results.extend([None] * (fan_out.taken - len(results)))
    outcome = fan_out.outcome(results)
    if outcome is not None:
        raise outcome
    return results  # type: ignore[return-value]  # every place holds a Task


@contextlib.asynccontextmanager
async def run_as_completed(fan_out: FanOut) -> AsyncIterator[FinishedTasks]:
    """Run ``fan_out`` for the ``async with``, handing over each task as it finishes."""
    # Unbuffered: a finished task waits in its worker until it is taken, so
    # no new input is taken while the body is busy.
    send, receive = anyio.create_memory_object_stream[Task](0)

    async def hand_over(index: int, task: Task) -> None:
        try:
            await send.send(task)
        except anyio.BrokenResourceError:
            # The body has left: the run is being cancelled.
            await anyio.lowlevel.checkpoint()

    async def run() -> None:
        with send:
            await fan_out.run(hand_over)

    body_error: Exception | None = None
    async with anyio.create_task_group() as group:
        group.start_soon(run)
        try:
            yield FinishedTasks(receive, fan_out)
        except Exception as exc:
            # Raised after the group, so that it is not wrapped in a group.
            body_error = exc
        finally:
            group.cancel_scope.cancel()
            receive.close()
    if body_error is not None:
        raise body_error
