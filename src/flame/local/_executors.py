"""The executor pool: executors bound to sessions, running their tasks.

An executor is bound to one session at a time. It opens the application's shim
once (session-enter), runs the session's pending tasks one after another, and
closes the shim (session-leave) when it is released: when its session closes,
or when the scheduler gives its slots to another session. While its session
has nothing pending it waits, bound, so that a new task starts at once.

Every task an executor takes ends Succeed or Failed, whatever happens: a shim
that raises fails the task with the error's text as its output. The one
exception is the cluster stopping: the session manager is frozen first, so the
task an executor was running stays Running in the store and runs again when a
cluster starts on it (see ``SessionManager.stop``).

A shim whose process is gone (it says so through ``broken``: a Grpc service
that crashed) is closed, and the executor opens a new one for its next task:
the task that was running fails, the ones after it run in the new service. A
shim that cannot be opened fails the task in hand the same way, and the next
task tries again. After ``MAX_RESTARTS`` such failures in a row, with no task
succeeding in between, the executor stops opening the shim: the tasks it
takes from then on fail at once, saying so and giving the last failure.
"""

from __future__ import annotations

import itertools
import logging

import anyio
import anyio.abc
import anyio.lowlevel

from .._proto.v04 import flame as pb
from ._scheduler import Demand, plan
from ._sessions import SessionManager, SessionRuntime
from .shims import open_shim

__all__ = ["MAX_RESTARTS", "Executor", "ExecutorPool"]

log = logging.getLogger("flame.local.executors")

_ids = itertools.count(1)

#: Failures of a shim in a row (its process died, or it could not be started)
#: after which an executor stops starting it again for its session.
MAX_RESTARTS = 3


def _error_text(exc: BaseException) -> bytes:
    text = str(exc) or type(exc).__name__
    return text.encode("utf-8", "replace")


def _given_up(app_name: str, session_id: int, crashes: int, reason: str) -> bytes:
    return (
        f"the service of application {app_name!r} crashed {crashes} times in a row, with no "
        f"task succeeding in between, so this executor no longer starts it for session "
        f"{session_id}. The last time: {reason}"
    ).encode("utf-8", "replace")


class Executor:
    """One executor bound to one session."""

    __slots__ = ("id", "release", "session", "wake")

    def __init__(self, session: SessionRuntime) -> None:
        self.id = next(_ids)
        self.session = session
        self.wake = anyio.Event()
        #: Set by the pool: leave the session after the current task.
        self.release = False


class ExecutorPool:
    """Starts, feeds and releases executors within ``capacity`` slots."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        #: Where executors run; set by the cluster before the first session.
        self.task_group: anyio.abc.TaskGroup | None = None
        self._manager: SessionManager | None = None
        #: Sessions that have work or executors: the only ones a plan looks at.
        self._active: dict[int, SessionRuntime] = {}

    def attach(self, manager: SessionManager) -> None:
        self._manager = manager

    # ------------------------------------------------------------------
    # What the session manager tells us (WorkListener)

    def work_added(self, session: SessionRuntime) -> None:
        if session.idle:
            executor = session.idle.pop()
            executor.wake.set()  # type: ignore[attr-defined]
            return
        self._active[session.id] = session
        # Only a free executor or one bound elsewhere can help; otherwise the
        # session's own executors take the task when they are done.
        if (
            self.capacity - self.used >= session.slots
            or len(session.executors) * session.slots < self.used
        ):
            self.reschedule()

    def session_closed(self, session: SessionRuntime) -> None:
        for executor in list(session.executors):
            self._release(executor)  # type: ignore[arg-type]
        self._active.pop(session.id, None)

    # ------------------------------------------------------------------
    # Scheduling

    def reschedule(self) -> None:
        """Ask the scheduler what to move, and do it."""
        active = self._active
        for session_id in [sid for sid, s in active.items() if not s.executors and not s.work]:
            del active[session_id]
        demands = [
            Demand(session_id=s.id, slots=s.slots, work=s.work, bound=len(s.executors))
            for s in active.values()
        ]
        decision = plan(self.capacity, demands)
        for session_id, count in decision.release:
            session = active[session_id]
            # Idle executors first: they leave at once.
            candidates = list(session.idle) + [
                e for e in session.executors if e not in session.idle
            ]
            for executor in candidates[:count]:
                self._release(executor)  # type: ignore[arg-type]
        for session_id, count in decision.start:
            session = active[session_id]
            for _ in range(count):
                self._start(session)

    def _release(self, executor: Executor) -> None:
        executor.release = True
        idle = executor.session.idle
        if executor in idle:
            idle.remove(executor)
            executor.wake.set()

    def _start(self, session: SessionRuntime) -> None:
        executor = Executor(session)
        session.executors.add(executor)
        self.used += session.slots
        assert self.task_group is not None
        self.task_group.start_soon(self._run, executor, name=f"flame executor {executor.id}")

    # ------------------------------------------------------------------
    # One executor's life

    async def _run(self, executor: Executor) -> None:
        manager = self._manager
        assert manager is not None
        session = executor.session
        current = manager.take_task(session)
        try:
            if current is None:
                return
            log.debug("executor %d: bound to session %d", executor.id, session.id)
            context = _session_context(session)
            app_name = context.application.name if context.application else "?"
            # Failures of the shim since a task last succeeded, and the last one's text.
            crashes = 0
            reason = ""
            while current is not None:
                if crashes >= MAX_RESTARTS:
                    # Restarting again would only crash again: fail at once.
                    task_id, task = current
                    current = None
                    manager.finish_task(
                        session,
                        task_id,
                        task,
                        False,
                        _given_up(app_name, session.id, crashes, reason),
                    )
                    current = await self._next(executor)
                    continue
                broken: str | None = None
                entered = False
                try:
                    async with open_shim(session.app, context) as shim:
                        entered = True
                        while current is not None:
                            broken = shim.broken
                            if broken is not None:
                                # It died between two tasks: the task in hand
                                # was never sent, so the next service runs it.
                                break
                            task_id, task = current
                            try:
                                output = await shim.invoke(
                                    pb.TaskContext(
                                        task_id=str(task_id),
                                        session_id=context.session_id,
                                        input=task.spec.input,
                                    )
                                )
                            except Exception as exc:
                                log.debug(
                                    "session %d: task %d failed: %s", session.id, task_id, exc
                                )
                                current = None
                                text = _error_text(exc)
                                manager.finish_task(session, task_id, task, False, text)
                                if shim.broken is not None:
                                    broken = text.decode("utf-8", "replace")
                                    break
                            else:
                                current = None
                                crashes = 0
                                manager.finish_task(session, task_id, task, True, output)
                            current = await self._next(executor)
                except Exception as exc:
                    if entered:
                        log.warning(
                            "executor %d (session %d): leaving the shim failed: %s",
                            executor.id,
                            session.id,
                            exc,
                        )
                        if broken is None:
                            break
                    else:
                        # Starting the service counts as one of its failures, the
                        # first time too: a service that cannot start would
                        # otherwise cost every task of the session a start.
                        assert current is not None
                        task_id, task = current
                        current = None
                        text = _error_text(exc)
                        manager.finish_task(session, task_id, task, False, text)
                        broken = text.decode("utf-8", "replace")
                if broken is None:
                    break
                crashes += 1
                reason = broken
                # Said when it happens, so that a failure is logged even if no
                # task follows to start the service again.
                log.warning(
                    "executor %d: the service of application %r failed in session %d (%d in a "
                    "row); %s: %s",
                    executor.id,
                    app_name,
                    session.id,
                    crashes,
                    "restarting it for the next task"
                    if crashes < MAX_RESTARTS
                    else "giving up: the next tasks this executor takes fail at once",
                    reason,
                )
                if current is None:
                    current = await self._next(executor)
        finally:
            if current is not None:
                # Cut short by anything but the cluster stopping (a stopped
                # manager ignores this, keeping the task to run again).
                task_id, task = current
                manager.finish_task(
                    session, task_id, task, False, b"the executor stopped while the task ran"
                )
            session.executors.discard(executor)
            if executor in session.idle:
                session.idle.remove(executor)
            self.used -= session.slots
            log.debug("executor %d: released from session %d", executor.id, session.id)
            self.reschedule()

    async def _next(self, executor: Executor) -> tuple[int, pb.Task] | None:
        """The next task for ``executor``, waiting while its session has none."""
        manager = self._manager
        assert manager is not None
        session = executor.session
        if executor.release:
            return None
        # Let others run between two tasks, however fast the shim is.
        await anyio.lowlevel.checkpoint()
        while True:
            if executor.release or not session.is_open:
                return None
            current = manager.take_task(session)
            if current is not None:
                return current
            session.idle.append(executor)
            await executor.wake.wait()
            executor.wake = anyio.Event()


def _session_context(session: SessionRuntime) -> pb.SessionContext:
    app = session.app
    spec = app.spec
    assert spec is not None and app.metadata is not None
    return pb.SessionContext(
        session_id=str(session.id),
        application=pb.ApplicationContext(
            name=app.metadata.name, shim=spec.shim, url=spec.url, command=spec.command
        ),
        common_data=session.message.spec.common_data,
    )
