"""The executor pool: executors bound to sessions, running their tasks.

The cluster has ``capacity`` slots; each is an executor of its own, with an
id, idle or bound to a session (an executor of a v0.4 session that asks for
several slots holds several). A bound executor opens the application's shim
once (session-enter), runs the session's pending tasks one after another, and
closes the shim (session-leave) when it is released: when its session
closes, or when the scheduler gives its slots to another session. While its
session has nothing pending it waits, bound, so that a new task starts at
once. How it binds and when it lets go follow the wire's executor contract
(:class:`Contract`):

v0.4
    The executor takes a task, then opens the shim. A shim that cannot be
    opened fails the task in hand with its text, and the next task tries
    again; after ``MAX_RESTARTS`` such failures (or deaths of the service)
    in a row, with no task succeeding in between, the executor stops
    opening the shim: the tasks it takes from then on fail at once, saying
    so and giving the last failure. An idle executor stays bound until
    another session needs its slot.
v0.6
    The executor binds first (opens the shim: starts the service, calls
    OnSessionEnter), then takes tasks. A failed bind fails no task: the
    session gets an event (code 1001) saying why, and another executor
    tries; after ``BIND_RETRY_LIMIT`` failures in a row the session gets
    event 1002 and no executor is bound to it any more (its tasks stay
    Pending), as on a v0.6 cluster. An idle executor unbinds after the
    application's ``delay_release`` seconds (60 by default); a session
    holds at most its ``max_instances`` executors (and its application's).

Every task an executor takes ends Succeed or Failed, whatever happens: a shim
that raises fails the task with the error's text. The one exception is the
cluster stopping: the session manager is frozen first, so the task an
executor was running stays Running in the store and runs again when a
cluster starts on it (see ``SessionManager.stop``).

A shim whose process is gone (it says so through ``broken``: a service that
crashed) is closed, and a new one is opened for the next task: the task that
was running fails, the ones after it run in the new service.
"""

from __future__ import annotations

import enum
import logging
import socket
import uuid

import anyio
import anyio.abc
import anyio.lowlevel

from ._model import DEFAULT_DELAY_RELEASE, Task
from ._scheduler import Demand, plan
from ._sessions import SessionManager, SessionRuntime
from .shims import SessionContext, ShimError, TaskContext, open_shim

__all__ = [
    "BIND_RETRY_LIMIT",
    "MAX_RESTARTS",
    "Contract",
    "Executor",
    "ExecutorPool",
    "ExecutorState",
    "Slot",
]

log = logging.getLogger("flame.local.executors")

#: Failures of a shim in a row (its process died, or it could not be started)
#: after which a v0.4 executor stops starting it again for its session.
MAX_RESTARTS = 3

#: Failed binds of a session in a row after which a v0.6 cluster binds no
#: more executors to it (its ``cluster.recovery.session.retry_limits``).
BIND_RETRY_LIMIT = 5

#: Session events of the v0.6 contract.
BIND_FAILED_EVENT = 1001
RETRY_LIMIT_EVENT = 1002

#: The bind result code of a v0.6 executor for a failure no shim explained
#: (11 and 12 come with a shim's BindError).
UNKNOWN_FAILURE = 19


class Contract(enum.Enum):
    """Which wire's executor contract the executors follow (see the module's text)."""

    V04 = "v0.4"
    V06 = "v0.6"


class ExecutorState(enum.Enum):
    """Where an executor is, as v0.6's ``ExecutorState`` names it."""

    IDLE = "Idle"
    BINDING = "Binding"
    BOUND = "Bound"
    UNBINDING = "Unbinding"


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _given_up(app_name: str, session_id: str, crashes: int, reason: str) -> str:
    return (
        f"the service of application {app_name!r} crashed {crashes} times in a row, with no "
        f"task succeeding in between, so this executor no longer starts it for session "
        f"{session_id}. The last time: {reason}"
    )


class Executor:
    """One executor bound to one session."""

    __slots__ = ("id", "release", "session", "slots", "state", "wake")

    def __init__(self, session: SessionRuntime, slots: list[int], executor_id: str) -> None:
        self.id = executor_id
        self.session = session
        #: The pool's slots it holds.
        self.slots = slots
        self.state = ExecutorState.BINDING
        self.wake = anyio.Event()
        #: Set by the pool: leave the session after the current task.
        self.release = False


class Slot:
    """One slot of the pool, as ``ListExecutor`` shows it: its id, and who holds it."""

    __slots__ = ("executor", "id")

    def __init__(self, slot_id: str) -> None:
        self.id = slot_id
        self.executor: Executor | None = None

    @property
    def state(self) -> ExecutorState:
        return ExecutorState.IDLE if self.executor is None else self.executor.state

    @property
    def session_id(self) -> str | None:
        return None if self.executor is None else self.executor.session.id


class ExecutorPool:
    """Starts, feeds and releases executors within ``capacity`` slots."""

    def __init__(self, capacity: int, contract: Contract = Contract.V04) -> None:
        self.capacity = capacity
        self.contract = contract
        self.used = 0
        #: The host this cluster runs on: the one node of a v0.6 cluster.
        self.node = socket.gethostname() or "localhost"
        #: Every slot, with an id made when the cluster starts (a UUID, as v0.6's).
        self.slots = [Slot(str(uuid.uuid4())) for _ in range(capacity)]
        #: Where executors run; set by the cluster before the first session.
        self.task_group: anyio.abc.TaskGroup | None = None
        #: Where the cluster serves, and a private directory of it: set by
        #: the cluster, for the services started by its executors.
        self.endpoint = ""
        self.runtime_dir = ""
        self._manager: SessionManager | None = None
        #: Sessions that have work or executors (by their order): the only ones a plan looks at.
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
        self._active[session.order] = session
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
        self._active.pop(session.order, None)

    # ------------------------------------------------------------------
    # Scheduling

    def _limit(self, session: SessionRuntime) -> int | None:
        if self.contract is Contract.V04:
            return None
        bound = len(session.executors)
        if session.paused:
            return bound  # no new executor; those bound stay
        limits = [
            n
            for n in (session.session.spec.max_instances, session.app.max_instances)
            if n is not None
        ]
        return min(limits) if limits else None

    def reschedule(self) -> None:
        """Ask the scheduler what to move, and do it."""
        active = self._active
        for order in [order for order, s in active.items() if not s.executors and not s.work]:
            del active[order]
        demands = [
            Demand(
                session=s.order,
                slots=s.slots,
                work=s.work,
                bound=len(s.executors),
                limit=self._limit(s),
            )
            for s in active.values()
        ]
        # Executors still leaving closed sessions hold their slots until they are gone.
        leaving = self.used - sum(d.bound * d.slots for d in demands)
        decision = plan(self.capacity - leaving, demands)
        for order, count in decision.release:
            session = active[order]
            # Idle executors first: they leave at once.
            candidates = list(session.idle) + [
                e for e in session.executors if e not in session.idle
            ]
            for executor in candidates[:count]:
                self._release(executor)  # type: ignore[arg-type]
        for order, count in decision.start:
            session = active[order]
            for _ in range(count):
                self._start(session)

    def _release(self, executor: Executor) -> None:
        executor.release = True
        idle = executor.session.idle
        if executor in idle:
            idle.remove(executor)
            executor.wake.set()

    def _start(self, session: SessionRuntime) -> None:
        free = [index for index, slot in enumerate(self.slots) if slot.executor is None]
        held = free[: session.slots]
        executor = Executor(session, held, self.slots[held[0]].id)
        for index in held:
            self.slots[index].executor = executor
        session.executors.add(executor)
        self.used += session.slots
        assert self.task_group is not None
        run = self._run_v06 if self.contract is Contract.V06 else self._run_v04
        self.task_group.start_soon(run, executor, name=f"flame executor {executor.id}")

    def _released(self, executor: Executor) -> None:
        """``executor`` left its session: free its slots, and let others have them."""
        session = executor.session
        session.executors.discard(executor)
        if executor in session.idle:
            session.idle.remove(executor)
        for index in executor.slots:
            self.slots[index].executor = None
        self.used -= session.slots
        log.debug("executor %s: released from session %s", executor.id, session.id)
        self.reschedule()

    # ------------------------------------------------------------------
    # One executor's life, v0.4: take a task, then open the shim

    async def _run_v04(self, executor: Executor) -> None:
        manager = self._manager
        assert manager is not None
        session = executor.session
        current = manager.take_task(session)
        try:
            if current is None:
                return
            log.debug("executor %s: bound to session %s", executor.id, session.id)
            context = self._session_context(executor)
            app_name = session.app.name
            # Failures of the shim since a task last succeeded, and the last one's text.
            crashes = 0
            reason = ""
            while current is not None:
                if crashes >= MAX_RESTARTS:
                    # Restarting again would only crash again: fail at once.
                    task, current = current, None
                    manager.finish_task(
                        session, task, False, None, _given_up(app_name, session.id, crashes, reason)
                    )
                    current = await self._next(executor)
                    continue
                broken: str | None = None
                entered = False
                try:
                    async with open_shim(session.app, context) as shim:
                        entered = True
                        executor.state = ExecutorState.BOUND
                        while current is not None:
                            broken = shim.broken
                            if broken is not None:
                                # It died between two tasks: the task in hand
                                # was never sent, so the next service runs it.
                                break
                            task = current
                            try:
                                output = await shim.invoke(_task_context(task))
                            except Exception as exc:
                                log.debug(
                                    "session %s: task %d failed: %s", session.id, task.id, exc
                                )
                                current = None
                                text = _failed(manager, session, task, exc)
                                if shim.broken is not None:
                                    broken = text
                                    break
                            else:
                                current = None
                                crashes = 0
                                manager.finish_task(session, task, True, output)
                            current = await self._next(executor)
                        executor.state = ExecutorState.UNBINDING
                except Exception as exc:
                    if entered:
                        log.warning(
                            "executor %s (session %s): leaving the shim failed: %s",
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
                        task, current = current, None
                        broken = _failed(manager, session, task, exc)
                executor.state = ExecutorState.BINDING
                if broken is None:
                    break
                crashes += 1
                reason = broken
                # Said when it happens, so that a failure is logged even if no
                # task follows to start the service again.
                log.warning(
                    "executor %s: the service of application %r failed in session %s (%d in a "
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
                manager.finish_task(
                    session, current, False, None, "the executor stopped while the task ran"
                )
            self._released(executor)

    async def _next(self, executor: Executor, idle_limit: float | None = None) -> Task | None:
        """The next task for ``executor``, waiting while its session has none.

        None once the executor is to leave: released, its session closed, or
        idle for ``idle_limit`` seconds.
        """
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
            if idle_limit is None:
                await executor.wake.wait()
            else:
                with anyio.move_on_after(idle_limit):
                    await executor.wake.wait()
                if not executor.wake.is_set():
                    # Idle too long: let the slot go.
                    if executor in session.idle:
                        session.idle.remove(executor)
                    return None
            executor.wake = anyio.Event()

    # ------------------------------------------------------------------
    # One executor's life, v0.6: bind, then take tasks

    async def _run_v06(self, executor: Executor) -> None:
        manager = self._manager
        assert manager is not None
        session = executor.session
        app = session.app
        delay = app.delay_release if app.delay_release is not None else DEFAULT_DELAY_RELEASE
        current: Task | None = None
        entered = False
        try:
            async with open_shim(app, self._session_context(executor)) as shim:
                entered = True
                executor.state = ExecutorState.BOUND
                session.bind_failures = 0
                log.debug("executor %s: bound to session %s", executor.id, session.id)
                while shim.broken is None:
                    current = await self._next(executor, delay)
                    if current is None:
                        break
                    task = current
                    try:
                        output = await shim.invoke(_task_context(task))
                    except Exception as exc:
                        current = None
                        _failed(manager, session, task, exc)
                    else:
                        current = None
                        manager.finish_task(session, task, True, output)
                executor.state = ExecutorState.UNBINDING
        except Exception as exc:
            if entered:
                log.warning(
                    "executor %s (session %s): leaving the shim failed: %s",
                    executor.id,
                    session.id,
                    exc,
                )
            else:
                self._bind_failed(executor, exc)
        finally:
            if current is not None:
                manager.finish_task(
                    session, current, False, None, "the executor stopped while the task ran"
                )
            self._released(executor)

    def _session_context(self, executor: Executor) -> SessionContext:
        session = executor.session
        return SessionContext(
            session_id=session.id,
            application=session.app,
            common_data=session.session.spec.common_data,
            executor_id=executor.id,
            cluster_endpoint=self.endpoint,
            runtime_dir=self.runtime_dir,
        )

    def _bind_failed(self, executor: Executor, exc: BaseException) -> None:
        """Say on the session why ``executor`` could not bind to it; pause it at the limit."""
        manager = self._manager
        assert manager is not None
        session = executor.session
        code = getattr(exc, "bind_code", UNKNOWN_FAILURE)
        text = exc.message if isinstance(exc, ShimError) and exc.message else _error_text(exc)
        session.bind_failures += 1
        log.warning(
            "executor %s could not bind session %s (%d in a row): %s",
            executor.id,
            session.id,
            session.bind_failures,
            text,
        )
        manager.add_session_event(
            session,
            BIND_FAILED_EVENT,
            f"Executor {executor.id} on node {self.node} failed to bind session with "
            f"return_code {code}: {text}",
        )
        if session.bind_failures >= BIND_RETRY_LIMIT and not session.paused:
            session.paused = True
            manager.add_session_event(
                session,
                RETRY_LIMIT_EVENT,
                f"Session retry limit reached after {session.bind_failures}/{BIND_RETRY_LIMIT} "
                "failed attempts; new executor assignment is paused for this session; existing "
                "executors are unchanged.",
            )
            log.warning(
                "session %s: %d binds failed in a row; no executor is bound to it any more",
                session.id,
                session.bind_failures,
            )


def _failed(manager: SessionManager, session: SessionRuntime, task: Task, exc: Exception) -> str:
    """Fail ``task`` with what ``exc`` says; that text."""
    if isinstance(exc, ShimError):
        text = exc.message
        manager.finish_task(session, task, False, exc.output, text)
        return text or "the task failed"
    text = _error_text(exc)
    manager.finish_task(session, task, False, None, text)
    return text


def _task_context(task: Task) -> TaskContext:
    return TaskContext(str(task.id), task.session_id, task.input)
