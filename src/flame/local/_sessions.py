"""The session manager: applications, sessions and tasks, and what keeps them consistent.

It knows no wire. Each frontend checks a request against its own wire's rules
(which ids are valid, which state allows which call, what a refusal says),
then asks the manager to make the change; the manager makes it, keeps the
counters and the store right, and tells the executors and the watchers. A
refusal the manager itself raises is a :class:`FlameError`: ``UNAVAILABLE``
once the cluster is stopping, ``INVALID_ARGUMENT`` for data above the
cluster's size limit.

What the manager keeps true, whichever wire asks:

* task ids count from 1 within each session, and are never handed out
  twice; a task starts Pending and ends Succeed, Failed or Cancelled;
* the counters of a session count its tasks by state;
* an open session's pending tasks run in the order they were created;
* a closed session runs nothing: closing cancels its pending tasks (a v0.4
  frontend closes only sessions that have none), and releases its executors.

:meth:`SessionManager.prune` deletes closed sessions, with their tasks, past
an age or beyond a number of them (the cluster's retention); open sessions
are never pruned.

The manager starts from what its store holds (nothing, for a fresh one):
sessions come back open or closed as they were, a task that was Running goes
back to Pending to run again (its executor is gone), the pending tasks of an
open session are queued again in id order, and the counters of each session
are counted again from its tasks. :meth:`SessionManager.resume` hands that
work to the executors once they can take it. :meth:`SessionManager.stop`
closes the store: the state it keeps is the state at that moment, a task
running then included, and the manager changes nothing more.

Everything here runs on one event loop and never awaits in the middle of a
change, so no lock is needed. The hot path (create a task, hand it to an
executor, finish it, tell its watchers) is O(1).
"""

from __future__ import annotations

import collections
import itertools
import logging
from collections.abc import Iterator
from typing import Protocol

import anyio

from .._errors import FlameError, FlameErrorCode
from ._model import (
    FINAL_STATES,
    Application,
    Event,
    Session,
    SessionSpec,
    SessionState,
    Task,
    TaskState,
    now_ms,
)
from ._storage import Storage

__all__ = ["SessionManager", "SessionRuntime", "TaskWatch", "WorkListener"]

log = logging.getLogger("flame.local.sessions")

_STOPPING = "the cluster is stopping; try again once it runs again"


class WorkListener(Protocol):
    """What the session manager tells the executor pool."""

    def work_added(self, session: SessionRuntime) -> None:
        """``session`` got a pending task."""

    def session_closed(self, session: SessionRuntime) -> None:
        """``session`` closed or went away: release its executors."""


class SessionRuntime:
    """What the cluster keeps about a session besides its stored record."""

    __slots__ = (
        "app",
        "bind_failures",
        "executors",
        "id",
        "idle",
        "order",
        "paused",
        "pending",
        "session",
    )

    def __init__(self, session: Session, app: Application, order: int) -> None:
        self.id = session.id
        self.session = session
        self.app = app
        #: Its place among the sessions of this cluster: smaller is older.
        self.order = order
        #: Pending tasks in order of creation.
        self.pending: collections.deque[Task] = collections.deque()
        #: Executors bound to the session, and those of them waiting for work.
        #: Owned by the executor pool.
        self.executors: set[object] = set()
        self.idle: list[object] = []
        #: Executors that could not bind to it in a row, and whether the pool
        #: gave up binding more (the v0.6 contract's retry limit).
        self.bind_failures = 0
        self.paused = False

    @property
    def slots(self) -> int:
        return self.session.spec.slots

    @property
    def is_open(self) -> bool:
        return self.session.state is SessionState.OPEN

    @property
    def work(self) -> int:
        session = self.session
        return session.pending + session.running


class TaskWatch:
    """One watch of a task, registered from its creation: the states it has still to be told of.

    ::

        with manager.watch(task) as watch:
            states = await watch.next()

    Leaving the ``with`` ends it.
    """

    __slots__ = ("_event", "_manager", "_states", "stopped", "task")

    def __init__(self, manager: SessionManager, task: Task) -> None:
        self._manager = manager
        self.task = task
        self._states: list[TaskState | None] = []  # None: the task was deleted
        self._event = anyio.Event()
        self.stopped = False

    def __enter__(self) -> TaskWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._manager._unwatch(self)

    def tell(self, state: TaskState | None) -> None:
        self._states.append(state)
        self._event.set()

    def stop(self) -> None:
        self.stopped = True
        self._event.set()

    async def next(self) -> list[TaskState | None]:
        """The states the task went through since the last call, in order, once there are some.

        A list with a final state or a None (the task was deleted, alone or
        with its session) is the last. Raises UNAVAILABLE if the cluster
        stops first, naming the task.
        """
        while True:
            await self._event.wait()
            self._event = anyio.Event()
            states, self._states = self._states, []
            if None in states or any(state in FINAL_STATES for state in states):
                return states
            if self.stopped:
                # The manager is frozen with the task unfinished.
                raise _stopping(self.task)
            if states:
                return states


class SessionManager:
    """Applications, sessions and tasks, kept in a :class:`Storage`."""

    def __init__(
        self,
        storage: Storage,
        *,
        capacity: int,
        max_message_bytes: int,
        listener: WorkListener | None = None,
    ) -> None:
        self.storage = storage
        self.capacity = capacity
        self.max_message_bytes = max_message_bytes
        self.listener = listener
        self._runtimes: dict[str, SessionRuntime] = {}
        #: Closed sessions, in the order they closed (their ids; the dict as an ordered set).
        self._closed: dict[str, None] = {}
        self._watches: dict[tuple[str, int], list[TaskWatch]] = {}
        self._order = itertools.count(1)
        self._stopped = False
        self._watches_gone: anyio.Event | None = None
        self._recover()

    # ------------------------------------------------------------------
    # Starting and stopping

    def _recover(self) -> None:
        storage = self.storage
        for session in storage.sessions():
            app = storage.session_application(session.id)
            if app is None:
                raise FlameError(
                    FlameErrorCode.INVALID_CONFIG,
                    f"the store holds session {session.id!r} without its application "
                    f"{session.spec.application!r}; it cannot be run",
                )
            rt = SessionRuntime(session, app, next(self._order))
            before = session.counters()
            session.pending = session.running = session.succeed = 0
            session.failed = session.cancelled = 0
            requeued = 0
            for task in storage.tasks(session.id):
                if task.state is TaskState.RUNNING:
                    # Its executor went with the cluster that stopped: run it again.
                    task.state = TaskState.PENDING
                    storage.save_task(task)
                    requeued += 1
                if task.state is TaskState.PENDING:
                    rt.pending.append(task)
                session.count(task.state, 1)
            if session.counters() != before:
                storage.save_session(session, app)
            self._runtimes[session.id] = rt
            if requeued:
                log.info(
                    "session %r: %d task(s) were running when the cluster stopped; they run again",
                    session.id,
                    requeued,
                )
        closed = [rt for rt in self._runtimes.values() if not rt.is_open]
        closed.sort(key=lambda rt: (rt.session.completion_time or 0, rt.order))
        self._closed = dict.fromkeys(rt.id for rt in closed)
        if self._runtimes:
            log.info(
                "recovered %d session(s), %d of them open",
                len(self._runtimes),
                sum(rt.is_open for rt in self._runtimes.values()),
            )

    def resume(self) -> None:
        """Hand the pending tasks found in the store to the executors."""
        if self.listener is None:
            return
        for rt in list(self._runtimes.values()):
            if rt.is_open and rt.pending:
                self.listener.work_added(rt)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        """Keep the state as it is now, and close the store.

        From now on the manager refuses changes and ignores what executors
        report: a task running now stays Running in the store, so that a
        cluster started on it runs the task again. Every watch ends with
        an error saying the cluster stopped, not with a state the task is
        not in.
        """
        if self._stopped:
            return
        self._stopped = True
        for watches in self._watches.values():
            for watch in watches:
                watch.stop()
        if self.listener is not None:
            for rt in list(self._runtimes.values()):
                self.listener.session_closed(rt)
        self.storage.close()

    async def watches_ended(self, limit: float = 1.0) -> None:
        """Give the watches :meth:`stop` ended ``limit`` seconds to tell their clients so."""
        if not self._watches:
            return
        self._watches_gone = anyio.Event()
        with anyio.move_on_after(limit, shield=True):
            await self._watches_gone.wait()
            # Their handlers send the error after the watch is gone.
            await anyio.sleep(0.01)

    def check_running(self) -> None:
        """Refuse a change with UNAVAILABLE once the cluster is stopping."""
        if self._stopped:
            raise FlameError(FlameErrorCode.UNAVAILABLE, _STOPPING)

    def check_size(self, data: bytes | None, what: str) -> None:
        """Refuse ``data`` above the cluster's message size with INVALID_ARGUMENT."""
        if data is not None and len(data) > self.max_message_bytes:
            raise FlameError(
                FlameErrorCode.INVALID_ARGUMENT,
                f"{what} is {len(data)} bytes, above this cluster's limit of "
                f"{self.max_message_bytes} bytes",
            )

    # ------------------------------------------------------------------
    # Applications

    def application(self, name: str) -> Application | None:
        return self.storage.get_application(name)

    def applications(self) -> list[Application]:
        return list(self.storage.applications())

    def save_application(self, app: Application) -> None:
        """Register ``app``, or replace the one of its name; sessions keep the one they had."""
        self.check_running()
        known = self.storage.get_application(app.name) is not None
        self.storage.save_application(app)
        log.info(
            "%s application %r (%s shim)",
            "updated" if known else "registered",
            app.name,
            app.shim.value,
        )

    def unregister_application(self, name: str) -> None:
        self.check_running()
        self.storage.delete_application(name)
        log.info("unregistered application %r", name)

    def open_sessions_of(self, name: str) -> list[SessionRuntime]:
        """The open sessions of application ``name``, oldest first."""
        return [rt for rt in self._runtimes.values() if rt.is_open and rt.app.name == name]

    def sessions_of(self, name: str) -> list[SessionRuntime]:
        """Every session of application ``name``, oldest first."""
        return [rt for rt in self._runtimes.values() if rt.app.name == name]

    # ------------------------------------------------------------------
    # Sessions

    def next_session_id(self) -> str:
        """A new session id, for a wire whose cluster makes them: "1", "2", ..."""
        self.check_running()
        return str(self.storage.next_session_id())

    def runtime(self, session_id: str) -> SessionRuntime | None:
        return self._runtimes.get(session_id)

    def runtimes(self) -> list[SessionRuntime]:
        """Every session, in the order they were created."""
        return list(self._runtimes.values())

    def create_session(
        self, session_id: str, spec: SessionSpec, app: Application
    ) -> SessionRuntime:
        """Create an open session ``session_id`` of ``app``; the id must be free."""
        self.check_running()
        assert session_id not in self._runtimes
        self.check_size(spec.common_data, "common_data")
        session = Session(session_id, spec, creation_time=now_ms())
        self.storage.save_session(session, app)
        rt = SessionRuntime(session, app, next(self._order))
        self._runtimes[session_id] = rt
        log.info("created session %r of application %r", session_id, app.name)
        return rt

    def reopen_session(self, rt: SessionRuntime) -> None:
        """Open a closed session again."""
        self.check_running()
        if rt.is_open:
            return
        rt.session.state = SessionState.OPEN
        rt.session.completion_time = None
        self.storage.save_session(rt.session, rt.app)
        self._closed.pop(rt.id, None)
        log.info("opened session %r again", rt.id)

    def close_session(self, rt: SessionRuntime) -> None:
        """Close ``rt`` (again, if it is closed): its pending tasks are cancelled.

        A running task is the caller's to refuse: it would finish in a
        closed session.
        """
        self.check_running()
        session = rt.session
        now = now_ms()
        cancelled = 0
        while rt.pending:
            task = rt.pending.popleft()
            task.state = TaskState.CANCELLED
            task.completion_time = now
            session.pending -= 1
            session.cancelled += 1
            self.storage.save_task(task)
            self._notify(rt.id, task.id, TaskState.CANCELLED)
            cancelled += 1
        session.state = SessionState.CLOSED
        session.completion_time = now
        self.storage.save_session(session, rt.app)
        # Closed again: it moves to the end of the line for retention.
        self._closed.pop(rt.id, None)
        self._closed[rt.id] = None
        if cancelled:
            log.info("closed session %r, cancelling %d pending task(s)", rt.id, cancelled)
        else:
            log.info("closed session %r", rt.id)
        if self.listener is not None:
            self.listener.session_closed(rt)

    def delete_session(self, rt: SessionRuntime) -> None:
        """Forget a session and its tasks, in memory and in the store."""
        self.check_running()
        self._delete(rt)
        log.info("deleted session %r", rt.id)

    def _delete(self, rt: SessionRuntime) -> None:
        del self._runtimes[rt.id]
        self._closed.pop(rt.id, None)
        # Only closed sessions are deleted: their tasks are final, and no
        # watch of them waits.
        self.storage.delete_session(rt.id)
        if self.listener is not None:
            self.listener.session_closed(rt)

    def add_session_event(self, rt: SessionRuntime, code: int, message: str) -> None:
        """Record an event of the session (a v0.6 frontend shows them)."""
        if self._stopped or rt.id not in self._runtimes:
            return
        rt.session.events.append(Event(code, message, now_ms()))
        self.storage.save_session(rt.session, rt.app)

    def prune(
        self,
        now: float,
        *,
        max_age: float | None = None,
        max_closed: int | None = None,
        limit: int = 100,
    ) -> int:
        """Delete closed sessions, with their tasks: those closed before ``now - max_age``
        (seconds), and the oldest beyond ``max_closed`` of them; at most ``limit`` in one call.

        How many went. Open sessions are never touched. Costs next to
        nothing when nothing is due: only the oldest closed session is
        looked at.
        """
        if self._stopped:
            return 0
        closed = self._closed
        pruned = 0
        while closed and pruned < limit:
            oldest = self._runtimes[next(iter(closed))]
            too_many = max_closed is not None and len(closed) > max_closed
            too_old = (
                max_age is not None
                and (oldest.session.completion_time or 0) <= (now - max_age) * 1000
            )
            if not (too_many or too_old):
                break
            self._delete(oldest)
            pruned += 1
        if pruned:
            log.info("pruned %d closed session(s); %d closed are kept", pruned, len(closed))
        return pruned

    # ------------------------------------------------------------------
    # Tasks

    def create_task(self, rt: SessionRuntime, data: bytes | None) -> Task:
        """A new Pending task of the open session ``rt``, queued to run."""
        self.check_running()
        self.check_size(data, "the task input")
        task = Task(self.storage.next_task_id(rt.id), rt.id, data, now_ms())
        self.storage.save_task(task)
        rt.session.pending += 1
        rt.pending.append(task)
        if self.listener is not None:
            self.listener.work_added(rt)
        return task

    def get_task(self, rt: SessionRuntime, task_id: int) -> Task | None:
        return self.storage.get_task(rt.id, task_id)

    def tasks(self, rt: SessionRuntime) -> Iterator[Task]:
        """The session's tasks, in id order."""
        return self.storage.tasks(rt.id)

    def delete_task(self, rt: SessionRuntime, task: Task) -> None:
        """Forget a task that is not running."""
        self.check_running()
        assert task.state is not TaskState.RUNNING
        if task.state is TaskState.PENDING:
            rt.pending.remove(task)
        rt.session.count(task.state, -1)
        self.storage.delete_task(rt.id, task.id)
        self._notify(rt.id, task.id, None)

    def take_task(self, rt: SessionRuntime) -> Task | None:
        """Hand the oldest pending task of ``rt`` to an executor: it is now Running."""
        if not rt.pending or self._stopped:
            return None
        task = rt.pending.popleft()
        task.state = TaskState.RUNNING
        task.running_time = now_ms()
        session = rt.session
        session.pending -= 1
        session.running += 1
        self.storage.save_task(task)
        self._notify(rt.id, task.id, TaskState.RUNNING)
        return task

    def finish_task(
        self,
        rt: SessionRuntime,
        task: Task,
        ok: bool,
        output: bytes | None,
        message: str | None = None,
    ) -> None:
        """Mark a running task Succeed (``ok``) or Failed, with its output and why it failed."""
        if self._stopped:
            # An executor stopped with the cluster: the task is not done, and
            # stays Running in the store, to run again.
            return
        if output is not None and len(output) > self.max_message_bytes:
            # A task carries its input and its output: a larger output would
            # make a task no client can read back.
            message = _output_too_large(len(output), self.max_message_bytes)
            ok, output = False, None
        state = TaskState.SUCCEED if ok else TaskState.FAILED
        task.state = state
        task.output = output
        task.message = message
        task.completion_time = now_ms()
        session = rt.session
        session.running -= 1
        if ok:
            session.succeed += 1
        else:
            session.failed += 1
        self.storage.save_task(task)
        self._notify(rt.id, task.id, state)

    # ------------------------------------------------------------------
    # Watching

    def _notify(self, session_id: str, task_id: int, state: TaskState | None) -> None:
        watches = self._watches.get((session_id, task_id))
        if watches:
            for watch in watches:
                watch.tell(state)

    def watch(self, task: Task) -> TaskWatch:
        """Watch ``task`` from now on (see :class:`TaskWatch`); UNAVAILABLE once stopping."""
        if self._stopped:
            raise _stopping(task)
        watch = TaskWatch(self, task)
        self._watches.setdefault((task.session_id, task.id), []).append(watch)
        return watch

    def _unwatch(self, watch: TaskWatch) -> None:
        key = (watch.task.session_id, watch.task.id)
        watches = self._watches.get(key)
        if watches is not None and watch in watches:
            watches.remove(watch)
            if not watches:
                del self._watches[key]
                if not self._watches and self._watches_gone is not None:
                    self._watches_gone.set()


def _stopping(task: Task) -> FlameError:
    # UNAVAILABLE: nothing is wrong with the call, and a cluster started
    # again on the same store answers it.
    return FlameError(
        FlameErrorCode.UNAVAILABLE,
        f"the cluster is stopping; task {task.id} of session {task.session_id} did not finish here",
    )


def _output_too_large(size: int, limit: int) -> str:
    """Why a task failed whose own output was over ``limit``."""
    return (
        f"the task's output is {size:,} bytes, over the {limit:,} this cluster keeps "
        "(max_message_bytes); return less, or raise the limit on the cluster and its clients"
    )
