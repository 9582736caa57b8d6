"""The session manager: applications, sessions and tasks, and their rules.

Every ``Frontend`` call lands on one method here, with its arguments already
taken out of the request. A refusal is a :class:`FlameError` whose code the
frontend turns into a gRPC status (NOT_FOUND, INVALID_ARGUMENT, or
FAILED_PRECONDITION for ``INVALID_STATE``); a refused call changes nothing.

The rules are those of a v0.4 session manager:

* session ids count from 1 across the cluster, task ids from 1 within each
  session; an id that is not an integer is an invalid argument;
* tasks are created only on an open session, and start Pending;
* a session closes only when none of its tasks is Pending or Running, and is
  deleted only once closed;
* the counters of a session count its tasks by state.

Besides what v0.4 offers, a closed session can be opened again, and a task
that is not running can be deleted. :meth:`SessionManager.prune` deletes
closed sessions, with their tasks, past an age or beyond a number of them
(the cluster's retention); open sessions are never pruned.

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
import logging
import time
from collections.abc import AsyncIterator
from typing import Protocol

import anyio

from .._errors import FlameError, FlameErrorCode
from .._proto.v04 import flame as pb
from .._wire import WireTask
from ._storage import Storage
from .shims import supported

__all__ = ["SessionManager", "SessionRuntime", "WorkListener"]

log = logging.getLogger("flame.local.sessions")

_FINAL = (pb.TaskState.Succeed, pb.TaskState.Failed)
_STOPPING = "the cluster is stopping; try again once it runs again"


def _now() -> int:
    return int(time.time())


def _not_found(message: str) -> FlameError:
    return FlameError(FlameErrorCode.NOT_FOUND, message)


def _invalid(message: str) -> FlameError:
    return FlameError(FlameErrorCode.INVALID_ARGUMENT, message)


def _state(message: str) -> FlameError:
    return FlameError(FlameErrorCode.INVALID_STATE, message)


def parse_id(text: str, what: str) -> int:
    """The integer in ``text``, or INVALID_ARGUMENT naming ``what`` it was."""
    body = text[1:] if text.startswith("-") else text
    if not body or not body.isascii() or not body.isdigit():
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise _invalid(f"{what} {shown!r} is not an integer; ids are decimal integers like '1'")
    if len(body) > 19:
        # An integer, but far beyond any id this cluster hands out.
        return -1
    return int(text)


class WorkListener(Protocol):
    """What the session manager tells the executor pool."""

    def work_added(self, session: SessionRuntime) -> None:
        """``session`` got a pending task."""

    def session_closed(self, session: SessionRuntime) -> None:
        """``session`` closed or went away: release its executors."""


class SessionRuntime:
    """What the cluster keeps about a session besides its stored message."""

    __slots__ = ("app", "executors", "id", "idle", "message", "pending")

    def __init__(self, session_id: int, message: pb.Session, app: pb.Application) -> None:
        self.id = session_id
        self.message = message
        self.app = app
        #: Pending tasks in order of creation: (task id, task).
        self.pending: collections.deque[tuple[int, pb.Task]] = collections.deque()
        #: Executors bound to the session, and those of them waiting for work.
        #: Owned by the executor pool.
        self.executors: set[object] = set()
        self.idle: list[object] = []

    @property
    def status(self) -> pb.SessionStatus:
        assert self.message.status is not None
        return self.message.status

    @property
    def slots(self) -> int:
        assert self.message.spec is not None
        return int(self.message.spec.slots)

    @property
    def is_open(self) -> bool:
        return bool(self.status.state == pb.SessionState.Open)

    @property
    def work(self) -> int:
        status = self.status
        return int(status.pending + status.running)


class _Watch:
    """One WatchTask stream: the states it has still to send."""

    __slots__ = ("event", "states", "stopped")

    def __init__(self) -> None:
        self.states: list[pb.TaskState | None] = []  # None: the task was deleted
        self.event = anyio.Event()
        self.stopped = False


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
        self._runtimes: dict[int, SessionRuntime] = {}
        #: Closed sessions, in the order they closed (their ids; the dict as an ordered set).
        self._closed: dict[int, None] = {}
        self._watches: dict[tuple[int, int], list[_Watch]] = {}
        self._stopped = False
        self._watches_gone: anyio.Event | None = None
        self._recover()

    # ------------------------------------------------------------------
    # Starting and stopping

    def _recover(self) -> None:
        storage = self.storage
        for message in storage.sessions():
            assert message.metadata is not None and message.spec is not None
            session_id = int(message.metadata.id)
            app = storage.session_application(session_id)
            if app is None:
                raise FlameError(
                    FlameErrorCode.INVALID_CONFIG,
                    f"the store holds session {session_id} without its application "
                    f"{message.spec.application!r}; it cannot be run",
                )
            rt = SessionRuntime(session_id, message, app)
            status = rt.status
            counted = pb.SessionStatus(
                state=status.state,
                creation_time=status.creation_time,
                completion_time=status.completion_time,
            )
            requeued = 0
            for task_id, task in storage.tasks(session_id):
                task_status = task.status
                assert task_status is not None
                if task_status.state == pb.TaskState.Running:
                    # Its executor went with the cluster that stopped: run it again.
                    task_status.state = pb.TaskState.Pending
                    storage.save_task(session_id, task_id, task)
                    requeued += 1
                if task_status.state == pb.TaskState.Pending:
                    rt.pending.append((task_id, task))
                self._count(counted, task_status.state, 1)
            if counted != status:
                message.status = counted
                storage.save_session(session_id, message, app)
            self._runtimes[session_id] = rt
            if requeued:
                log.info(
                    "session %d: %d task(s) were running when the cluster stopped; they run again",
                    session_id,
                    requeued,
                )
        closed = [rt for rt in self._runtimes.values() if not rt.is_open]
        closed.sort(key=lambda rt: (rt.status.completion_time or 0, rt.id))
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
                watch.stopped = True
                watch.event.set()
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

    def _refuse_if_stopped(self) -> None:
        if self._stopped:
            raise FlameError(FlameErrorCode.UNAVAILABLE, _STOPPING)

    # ------------------------------------------------------------------
    # Applications

    def check_application(self, name: str, spec: pb.ApplicationSpec | None) -> str | None:
        """Why ``spec`` cannot be registered as ``name``, or None if it can."""
        if not name:
            return "the application name is empty; give the application a name"
        if spec is None:
            return f"application {name!r} has no spec; send an ApplicationSpec with a shim"
        kind = pb.Shim(spec.shim)
        if kind not in list(pb.Shim):
            known = ", ".join(k.name for k in pb.Shim)
            return f"application {name!r} has an unknown shim {int(spec.shim)}; one of {known}"
        if not supported(kind):
            runnable = ", ".join(k.name for k in pb.Shim if supported(k))
            return (
                f"application {name!r} uses the {kind.name} shim, which this cluster cannot "
                f"run yet; it runs {runnable}"
            )
        if kind == pb.Shim.Stdio and not spec.command:
            return f"application {name!r} uses the Stdio shim but has no command to run"
        for entry in spec.environments:
            if "=" not in entry or entry.startswith("="):
                return (
                    f"application {name!r} has the environment entry {entry!r}; "
                    "entries are NAME=VALUE"
                )
        return None

    def register_application(self, name: str, spec: pb.ApplicationSpec | None) -> str | None:
        """Register ``name``; return None, or why it was refused (for a Result)."""
        if self._stopped:
            return _STOPPING
        if self.storage.get_application(name) is not None:
            return f"application {name!r} is already registered; unregister it first"
        problem = self.check_application(name, spec)
        if problem is not None:
            return problem
        app = pb.Application(
            metadata=pb.Metadata(id=name, name=name),
            spec=spec,
            status=pb.ApplicationStatus(state=pb.ApplicationState.Enabled, creation_time=_now()),
        )
        self.storage.save_application(app)
        log.info("registered application %r (%s shim)", name, pb.Shim(app.spec.shim).name)
        return None

    def update_application(self, name: str, spec: pb.ApplicationSpec | None) -> str | None:
        """Replace the spec of ``name``; sessions already created keep the old one."""
        self._refuse_if_stopped()
        app = self._application(name)
        problem = self.check_application(name, spec)
        if problem is not None:
            return problem
        # A new object: the sessions created before keep the one they started with.
        updated = pb.Application(metadata=app.metadata, spec=spec, status=app.status)
        self.storage.save_application(updated)
        log.info("updated application %r", name)
        return None

    def unregister_application(self, name: str) -> None:
        self._refuse_if_stopped()
        self._application(name)
        users = sorted(
            rt.id for rt in self._runtimes.values() if rt.is_open and rt.app.metadata.name == name
        )
        if users:
            raise _state(
                f"application {name!r} is used by open session(s) "
                f"{', '.join(map(str, users))}; close them first"
            )
        self.storage.delete_application(name)
        log.info("unregistered application %r", name)

    def get_application(self, name: str) -> pb.Application:
        return self._application(name)

    def list_applications(self) -> list[pb.Application]:
        return list(self.storage.applications())

    def _application(self, name: str) -> pb.Application:
        if not name:
            raise _invalid("the application name is empty")
        app = self.storage.get_application(name)
        if app is None:
            raise _not_found(f"application {name!r} is not registered")
        return app

    # ------------------------------------------------------------------
    # Sessions

    def create_session(self, spec: pb.SessionSpec | None) -> pb.Session:
        self._refuse_if_stopped()
        if spec is None:
            raise _invalid("CreateSession needs `session` (a SessionSpec naming the application)")
        if not spec.application:
            raise _invalid("the session spec names no application")
        app = self.storage.get_application(spec.application)
        if app is None:
            raise _not_found(f"application {spec.application!r} is not registered")
        slots = spec.slots or 1
        if slots < 0:
            raise _invalid(f"slots is {spec.slots}; ask for 1 or more slots per executor")
        if slots > self.capacity:
            raise _invalid(
                f"the session asks for {slots} slots per executor but this cluster has "
                f"{self.capacity} in all"
            )
        common = spec.common_data
        if common is not None and len(common) > self.max_message_bytes:
            raise _invalid(
                f"common_data is {len(common)} bytes, above this cluster's limit of "
                f"{self.max_message_bytes} bytes"
            )
        session_id = self.storage.next_session_id()
        message = pb.Session(
            metadata=pb.Metadata(id=str(session_id), name=str(session_id)),
            spec=pb.SessionSpec(application=spec.application, slots=slots, common_data=common),
            status=pb.SessionStatus(state=pb.SessionState.Open, creation_time=_now()),
        )
        self.storage.save_session(session_id, message, app)
        self._runtimes[session_id] = SessionRuntime(session_id, message, app)
        log.info("created session %d of application %r", session_id, spec.application)
        return message

    def runtime(self, session_text: str) -> SessionRuntime:
        session_id = parse_id(session_text, "session id")
        runtime = self._runtimes.get(session_id)
        if runtime is None:
            raise _not_found(f"session {session_text!r} does not exist")
        return runtime

    def get_session(self, session_text: str) -> pb.Session:
        return self.runtime(session_text).message

    def list_sessions(self) -> list[pb.Session]:
        return list(self.storage.sessions())

    def open_session(self, session_text: str) -> pb.Session:
        """Open a closed session again; an open one is returned as it is."""
        self._refuse_if_stopped()
        rt = self.runtime(session_text)
        if not rt.is_open:
            rt.status.state = pb.SessionState.Open
            rt.status.completion_time = None
            self.storage.save_session(rt.id, rt.message, rt.app)
            self._closed.pop(rt.id, None)
            log.info("opened session %d again", rt.id)
        return rt.message

    def close_session(self, session_text: str) -> pb.Session:
        self._refuse_if_stopped()
        rt = self.runtime(session_text)
        status = rt.status
        if not rt.is_open:
            return rt.message
        if status.pending or status.running:
            raise _state(
                f"session {rt.id} still has {status.pending} pending and {status.running} "
                "running task(s); wait for them to finish before closing it"
            )
        status.state = pb.SessionState.Closed
        status.completion_time = _now()
        self.storage.save_session(rt.id, rt.message, rt.app)
        self._closed[rt.id] = None
        log.info("closed session %d", rt.id)
        if self.listener is not None:
            self.listener.session_closed(rt)
        return rt.message

    def delete_session(self, session_text: str) -> pb.Session:
        """Forget a closed session and its tasks, in memory and in the store."""
        self._refuse_if_stopped()
        rt = self.runtime(session_text)
        if rt.is_open:
            raise _state(f"session {rt.id} is open; close it before deleting it")
        self._delete(rt)
        log.info("deleted session %d", rt.id)
        return rt.message

    def _delete(self, rt: SessionRuntime) -> None:
        del self._runtimes[rt.id]
        self._closed.pop(rt.id, None)
        self.storage.delete_session(rt.id)
        if self.listener is not None:
            self.listener.session_closed(rt)

    def prune(
        self,
        now: float,
        *,
        max_age: float | None = None,
        max_closed: int | None = None,
        limit: int = 100,
    ) -> int:
        """Delete closed sessions, with their tasks: those closed before ``now - max_age``,
        and the oldest beyond ``max_closed`` of them; at most ``limit`` in one call.

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
            too_old = max_age is not None and (oldest.status.completion_time or 0) <= now - max_age
            if not (too_many or too_old):
                break
            self._delete(oldest)
            pruned += 1
        if pruned:
            log.info("pruned %d closed session(s); %d closed are kept", pruned, len(closed))
        return pruned

    # ------------------------------------------------------------------
    # Tasks

    def create_task(self, spec: pb.TaskSpec | None) -> pb.Task:
        self._refuse_if_stopped()
        if spec is None:
            raise _invalid("CreateTask needs `task` (a TaskSpec naming the session)")
        if not spec.session_id:
            raise _invalid("the task spec names no session; set session_id")
        rt = self.runtime(spec.session_id)
        if not rt.is_open:
            raise _state(f"session {rt.id} is closed; create a new session for more tasks")
        data = spec.input
        if data is not None and len(data) > self.max_message_bytes:
            raise _invalid(
                f"the task input is {len(data)} bytes, above this cluster's limit of "
                f"{self.max_message_bytes} bytes"
            )
        task_id = self.storage.next_task_id(rt.id)
        text = str(task_id)
        task = WireTask(
            metadata=pb.Metadata(id=text, name=text),
            spec=pb.TaskSpec(session_id=str(rt.id), input=data),
            status=pb.TaskStatus(state=pb.TaskState.Pending, creation_time=_now()),
        )
        self.storage.save_task(rt.id, task_id, task)
        rt.status.pending += 1
        rt.pending.append((task_id, task))
        log.debug("session %d: created task %d", rt.id, task_id)
        if self.listener is not None:
            self.listener.work_added(rt)
        return task

    def _task(self, task_text: str, session_text: str) -> tuple[SessionRuntime, int, pb.Task]:
        if not task_text:
            raise _invalid("the task id is empty")
        if not session_text:
            raise _invalid("the session id is empty; a task is named by session and task id")
        task_id = parse_id(task_text, "task id")
        rt = self.runtime(session_text)
        task = self.storage.get_task(rt.id, task_id)
        if task is None:
            raise _not_found(f"task {task_text!r} does not exist in session {rt.id}")
        return rt, task_id, task

    def get_task(self, task_text: str, session_text: str) -> pb.Task:
        return self._task(task_text, session_text)[2]

    def delete_task(self, task_text: str, session_text: str) -> pb.Task:
        self._refuse_if_stopped()
        rt, task_id, task = self._task(task_text, session_text)
        state = task.status.state
        if state == pb.TaskState.Running:
            raise _state(f"task {task_id} of session {rt.id} is running; wait for it to finish")
        if state == pb.TaskState.Pending:
            rt.pending.remove((task_id, task))
        self._count(rt.status, state, -1)
        self.storage.delete_task(rt.id, task_id)
        self._notify(rt.id, task_id, None)
        log.debug("session %d: deleted task %d", rt.id, task_id)
        return task

    def take_task(self, rt: SessionRuntime) -> tuple[int, pb.Task] | None:
        """Hand the oldest pending task of ``rt`` to an executor: it is now Running."""
        if not rt.pending or self._stopped:
            return None
        task_id, task = rt.pending.popleft()
        task.status.state = pb.TaskState.Running
        status = rt.status
        status.pending -= 1
        status.running += 1
        self.storage.save_task(rt.id, task_id, task)
        self._notify(rt.id, task_id, pb.TaskState.Running)
        return task_id, task

    def finish_task(
        self, rt: SessionRuntime, task_id: int, task: pb.Task, ok: bool, output: bytes | None
    ) -> None:
        """Mark a running task Succeed (``ok``) or Failed, with its output."""
        if self._stopped:
            # An executor stopped with the cluster: the task is not done, and
            # stays Running in the store, to run again.
            return
        if output is not None and len(output) > self.max_message_bytes:
            # A task carries its input and its output: a larger output would
            # make a task no client can read back.
            ok, output = False, _output_too_large(len(output), self.max_message_bytes)
        state = pb.TaskState.Succeed if ok else pb.TaskState.Failed
        task.spec.output = output
        status = task.status
        assert status is not None
        status.state = state
        status.completion_time = _now()
        counters = rt.status
        counters.running -= 1
        if ok:
            counters.succeed += 1
        else:
            counters.failed += 1
        self.storage.save_task(rt.id, task_id, task)
        self._notify(rt.id, task_id, state)

    @staticmethod
    def _count(status: pb.SessionStatus, state: pb.TaskState, delta: int) -> None:
        if state == pb.TaskState.Pending:
            status.pending += delta
        elif state == pb.TaskState.Running:
            status.running += delta
        elif state == pb.TaskState.Succeed:
            status.succeed += delta
        else:
            status.failed += delta

    # ------------------------------------------------------------------
    # Watching

    def _notify(self, session_id: int, task_id: int, state: pb.TaskState | None) -> None:
        watches = self._watches.get((session_id, task_id))
        if watches:
            for watch in watches:
                watch.states.append(state)
                watch.event.set()

    async def watch_task(self, task_text: str, session_text: str) -> AsyncIterator[pb.Task]:
        """The task (unless pending), then once per change of state, up to Succeed or Failed."""
        rt, task_id, task = self._task(task_text, session_text)
        status = task.status
        assert status is not None
        if status.state in _FINAL:
            yield task
            return
        if self._stopped:
            raise _stopping(task_id, rt.id)
        key = (rt.id, task_id)
        watch = _Watch()
        self._watches.setdefault(key, []).append(watch)
        try:
            if status.state != pb.TaskState.Pending:
                # A running task's watch starts with where it is. A pending
                # one's starts with its next state, as on a v0.4 cluster: the
                # watcher knows it is pending (CreateTask said so), and that
                # is a message fewer per task.
                yield _snapshot(task, status.state)
            while True:
                await watch.event.wait()
                watch.event = anyio.Event()
                states, watch.states = watch.states, []
                # Only the newest state is sent: one superseded before the
                # watch woke (Running, for a task that finished at once) is
                # skipped, as a v0.4 cluster may. A message fewer per task.
                if any(state in _FINAL for state in states):
                    yield task
                    return
                if watch.stopped:
                    # No state to send: the manager is frozen with the task unfinished.
                    raise _stopping(task_id, rt.id)
                if None in states:
                    raise _not_found(f"task {task_id} of session {rt.id} was deleted")
                state = states[-1]
                assert state is not None
                yield _snapshot(task, state)
        finally:
            watches = self._watches.get(key)
            if watches is not None:
                watches.remove(watch)
                if not watches:
                    del self._watches[key]
                    if not self._watches and self._watches_gone is not None:
                        self._watches_gone.set()


def _stopping(task_id: int, session_id: int) -> FlameError:
    # UNAVAILABLE: nothing is wrong with the call, and a cluster started
    # again on the same store answers it.
    return FlameError(
        FlameErrorCode.UNAVAILABLE,
        f"the cluster is stopping; task {task_id} of session {session_id} did not finish here",
    )


def _snapshot(task: pb.Task, state: pb.TaskState) -> pb.Task:
    """The task as it was in the unfinished ``state``: no output, no completion time."""
    assert task.spec is not None and task.status is not None
    return WireTask(
        metadata=task.metadata,
        spec=pb.TaskSpec(session_id=task.spec.session_id, input=task.spec.input),
        status=pb.TaskStatus(state=state, creation_time=task.status.creation_time),
    )


def _output_too_large(size: int, limit: int) -> bytes:
    """The output of a task failed because its own output was over ``limit``."""
    return (
        f"the task's output is {size:,} bytes, over the {limit:,} this cluster keeps "
        "(max_message_bytes); return less, or raise the limit on the cluster and its clients"
    ).encode()
