"""The v0.4 ``flame.Frontend``: Flame v0.4's rules, and its messages.

The rules are those of a v0.4 session manager:

* session ids count from 1 across the cluster, task ids from 1 within each
  session; an id that is not an integer is an invalid argument;
* tasks are created only on an open session, and start Pending;
* a session closes only when none of its tasks is Pending or Running, and is
  deleted only once closed;
* the counters of a session count its tasks by state;
* times are Unix seconds; a failed task's output is the error's text when
  the shim gave no output of its own.

Besides what v0.4 offers, a closed session can be opened again, and a task
that is not running can be deleted. Applications run with the Log, Stdio,
Shell and Grpc shims.

Refusals are more precise than a v0.4 cluster's:

============================  =====================
refusal (FlameError code)     gRPC status
============================  =====================
NOT_FOUND                     NOT_FOUND
ALREADY_EXISTS                ALREADY_EXISTS
INVALID_ARGUMENT              INVALID_ARGUMENT
INVALID_STATE                 FAILED_PRECONDITION
UNAVAILABLE                   UNAVAILABLE (the cluster is stopping)
anything else                 INTERNAL
============================  =====================

``RegisterApplication`` and ``UpdateApplication`` answer as a v0.4 cluster
does: a refused spec is a ``Result`` with ``return_code`` -1 and a message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs

from ..._errors import FlameError, FlameErrorCode
from ..._proto.v04 import flame as pb
from ..._wire import decode_create_task, decode_get_task, decode_watch_task, encode_task_fields
from .._model import FINAL_STATES, Application, SessionSpec, Shim, Task, TaskState, now_ms
from .._sessions import SessionManager, SessionRuntime
from ..shims import supported
from ._serving import Encoded, Service, serving

__all__ = ["SHIMS", "FrontendV04", "application_problem"]

#: The shims of this wire, by their v0.4 names.
SHIMS = (Shim.LOG, Shim.STDIO, Shim.WASM, Shim.SHELL, Shim.GRPC)

_STATUS = {
    FlameErrorCode.NOT_FOUND: "NOT_FOUND",
    FlameErrorCode.ALREADY_EXISTS: "ALREADY_EXISTS",
    FlameErrorCode.INVALID_ARGUMENT: "INVALID_ARGUMENT",
    FlameErrorCode.INVALID_STATE: "FAILED_PRECONDITION",
    FlameErrorCode.UNAVAILABLE: "UNAVAILABLE",
}

#: The calls made once or more per task: read with the hand-written codec.
_FAST_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "/flame.Frontend/CreateTask": decode_create_task,
    "/flame.Frontend/GetTask": decode_get_task,
    "/flame.Frontend/WatchTask": decode_watch_task,
}
_ENCODED = (
    "/flame.Frontend/CreateTask",
    "/flame.Frontend/GetTask",
    "/flame.Frontend/WatchTask",
    "/flame.Frontend/DeleteTask",
)

_STOPPING = "the cluster is stopping; try again once it runs again"


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


# --------------------------------------------------------------------------
# From the wire


def application_problem(app: Application) -> str | None:
    """Why this wire's cluster cannot run ``app``, or None if it can."""
    unsaid = [
        key
        for key in ("description", "image", "max_instances", "delay_release", "installer", "schema")
        if getattr(app, key) is not None
    ] + (["labels"] if app.labels else [])
    if unsaid:
        return (
            f"application {app.name!r} sets {', '.join(unsaid)}, which v0.4 has not "
            "(they are v0.6's)"
        )
    if app.shim not in SHIMS:
        known = ", ".join(kind.value for kind in SHIMS)
        return (
            f"application {app.name!r} uses the {app.shim.value} shim, which v0.4 has not; "
            f"it has {known}"
        )
    if not supported(app.shim):
        runnable = ", ".join(kind.value for kind in SHIMS if supported(kind))
        return (
            f"application {app.name!r} uses the {app.shim.value} shim, which this cluster cannot "
            f"run yet; it runs {runnable}"
        )
    if app.shim is Shim.STDIO and not app.command:
        return f"application {app.name!r} uses the Stdio shim but has no command to run"
    return None


def _application(name: str, spec: pb.ApplicationSpec | None, created: int) -> Application | str:
    """The application a spec registers, or why it cannot be registered."""
    if not name:
        return "the application name is empty; give the application a name"
    if spec is None:
        return f"application {name!r} has no spec; send an ApplicationSpec with a shim"
    try:
        kind = pb.Shim(spec.shim)
    except ValueError:
        kind = None
    if kind is None or kind not in list(pb.Shim):
        known = ", ".join(k.name for k in pb.Shim)
        return f"application {name!r} has an unknown shim {int(spec.shim)}; one of {known}"
    environments = []
    for entry in spec.environments:
        if "=" not in entry or entry.startswith("="):
            return (
                f"application {name!r} has the environment entry {entry!r}; entries are NAME=VALUE"
            )
        key, _, value = entry.partition("=")
        environments.append((key, value))
    app = Application(
        name=name,
        shim=Shim.named(kind.name),
        command=spec.command,
        arguments=tuple(spec.arguments),
        environments=tuple(environments),
        working_directory=spec.working_directory,
        url=spec.url,
        creation_time=created,
    )
    return application_problem(app) or app


# --------------------------------------------------------------------------
# To the wire


def _seconds(ms: int | None) -> int | None:
    return None if ms is None else ms // 1000


def application_message(app: Application) -> pb.Application:
    return pb.Application(
        metadata=pb.Metadata(id=app.name, name=app.name),
        spec=pb.ApplicationSpec(
            shim=pb.Shim[app.shim.value],
            url=app.url,
            command=app.command,
            arguments=list(app.arguments),
            environments=[f"{key}={value}" for key, value in app.environments],
            working_directory=app.working_directory,
        ),
        status=pb.ApplicationStatus(
            state=pb.ApplicationState(int(app.state)), creation_time=app.creation_time // 1000
        ),
    )


def session_message(rt: SessionRuntime) -> pb.Session:
    session = rt.session
    return pb.Session(
        metadata=pb.Metadata(id=session.id, name=session.id),
        spec=pb.SessionSpec(
            application=session.spec.application,
            slots=session.spec.slots,
            common_data=session.spec.common_data,
        ),
        status=pb.SessionStatus(
            state=pb.SessionState(int(session.state)),
            creation_time=session.creation_time // 1000,
            completion_time=_seconds(session.completion_time),
            pending=session.pending,
            running=session.running,
            succeed=session.succeed,
            failed=session.failed,
        ),
    )


def task_reply(task: Task, state: TaskState | None = None) -> Encoded:
    """The task as a v0.4 ``Task``; with ``state``, as it was then, unfinished (no output)."""
    if state is not None:
        return Encoded(
            encode_task_fields(
                str(task.id),
                task.session_id,
                task.input,
                None,
                state,
                task.creation_time // 1000,
                None,
            )
        )
    output = task.output
    if output is None and task.state is TaskState.FAILED and task.message is not None:
        output = task.message.encode("utf-8", "replace")
    return Encoded(
        encode_task_fields(
            str(task.id),
            task.session_id,
            task.input,
            output,
            task.state,
            task.creation_time // 1000,
            _seconds(task.completion_time),
        )
    )


def _result(problem: str | None) -> pb.Result:
    if problem is None:
        return pb.Result(return_code=0)
    return pb.Result(return_code=-1, message=problem)


# --------------------------------------------------------------------------
# The service


class FrontendV04:
    """Every method of v0.4's ``Frontend``, on a :class:`SessionManager`."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

    def service(self) -> Service:
        """The handlers to serve."""
        return serving(
            pb.FrontendBase,
            self,
            self.manager.storage,
            statuses=_STATUS,
            fast_decoders=_FAST_DECODERS,
            encoded=_ENCODED,
        )

    # -- applications ----------------------------------------------------

    def register_application(self, message: pb.RegisterApplicationRequest) -> pb.Result:
        manager = self.manager
        if manager.stopped:
            return _result(_STOPPING)
        if manager.application(message.name) is not None:
            return _result(
                f"application {message.name!r} is already registered; unregister it first"
            )
        app = _application(message.name, message.application, now_ms())
        if isinstance(app, str):
            return _result(app)
        manager.save_application(app)
        return _result(None)

    def update_application(self, message: pb.UpdateApplicationRequest) -> pb.Result:
        self.manager.check_running()
        known = self._application(message.name)
        app = _application(message.name, message.application, known.creation_time)
        if isinstance(app, str):
            return _result(app)
        # Sessions created before keep the application they started with.
        self.manager.save_application(attrs.evolve(app, state=known.state))
        return _result(None)

    def unregister_application(self, message: pb.UnregisterApplicationRequest) -> pb.Result:
        manager = self.manager
        manager.check_running()
        self._application(message.name)
        users = [rt.id for rt in manager.open_sessions_of(message.name)]
        if users:
            raise _state(
                f"application {message.name!r} is used by open session(s) "
                f"{', '.join(users)}; close them first"
            )
        manager.unregister_application(message.name)
        return _result(None)

    def get_application(self, message: pb.GetApplicationRequest) -> pb.Application:
        return application_message(self._application(message.name))

    def list_application(self, message: pb.ListApplicationRequest) -> pb.ApplicationList:
        return pb.ApplicationList(
            applications=[application_message(app) for app in self.manager.applications()]
        )

    def _application(self, name: str) -> Application:
        if not name:
            raise _invalid("the application name is empty")
        app = self.manager.application(name)
        if app is None:
            raise _not_found(f"application {name!r} is not registered")
        return app

    # -- sessions --------------------------------------------------------

    def create_session(self, message: pb.CreateSessionRequest) -> pb.Session:
        manager = self.manager
        manager.check_running()
        spec = message.session
        if spec is None:
            raise _invalid("CreateSession needs `session` (a SessionSpec naming the application)")
        if not spec.application:
            raise _invalid("the session spec names no application")
        app = manager.application(spec.application)
        if app is None:
            raise _not_found(f"application {spec.application!r} is not registered")
        slots = spec.slots or 1
        if slots < 0:
            raise _invalid(f"slots is {spec.slots}; ask for 1 or more slots per executor")
        if slots > manager.capacity:
            raise _invalid(
                f"the session asks for {slots} slots per executor but this cluster has "
                f"{manager.capacity} in all"
            )
        manager.check_size(spec.common_data, "common_data")
        rt = manager.create_session(
            manager.next_session_id(),
            SessionSpec(application=spec.application, slots=slots, common_data=spec.common_data),
            app,
        )
        return session_message(rt)

    def _runtime(self, session_text: str) -> SessionRuntime:
        session_id = parse_id(session_text, "session id")
        rt = self.manager.runtime(str(session_id))
        if rt is None:
            raise _not_found(f"session {session_text!r} does not exist")
        return rt

    def get_session(self, message: pb.GetSessionRequest) -> pb.Session:
        return session_message(self._runtime(message.session_id))

    def list_session(self, message: pb.ListSessionRequest) -> pb.SessionList:
        return pb.SessionList(sessions=[session_message(rt) for rt in self.manager.runtimes()])

    def open_session(self, message: pb.OpenSessionRequest) -> pb.Session:
        """Open a closed session again; an open one is returned as it is."""
        self.manager.check_running()
        rt = self._runtime(message.session_id)
        self.manager.reopen_session(rt)
        return session_message(rt)

    def close_session(self, message: pb.CloseSessionRequest) -> pb.Session:
        self.manager.check_running()
        rt = self._runtime(message.session_id)
        if rt.is_open:
            session = rt.session
            if session.pending or session.running:
                raise _state(
                    f"session {rt.id} still has {session.pending} pending and {session.running} "
                    "running task(s); wait for them to finish before closing it"
                )
            self.manager.close_session(rt)
        return session_message(rt)

    def delete_session(self, message: pb.DeleteSessionRequest) -> pb.Session:
        """Forget a closed session and its tasks, in memory and in the store."""
        self.manager.check_running()
        rt = self._runtime(message.session_id)
        if rt.is_open:
            raise _state(f"session {rt.id} is open; close it before deleting it")
        reply = session_message(rt)
        self.manager.delete_session(rt)
        return reply

    # -- tasks -----------------------------------------------------------

    def create_task(self, message: pb.CreateTaskRequest) -> Encoded:
        manager = self.manager
        manager.check_running()
        spec = message.task
        if spec is None:
            raise _invalid("CreateTask needs `task` (a TaskSpec naming the session)")
        if not spec.session_id:
            raise _invalid("the task spec names no session; set session_id")
        rt = self._runtime(spec.session_id)
        if not rt.is_open:
            raise _state(f"session {rt.id} is closed; create a new session for more tasks")
        return task_reply(manager.create_task(rt, spec.input))

    def _task(self, task_text: str, session_text: str) -> tuple[SessionRuntime, Task]:
        if not task_text:
            raise _invalid("the task id is empty")
        if not session_text:
            raise _invalid("the session id is empty; a task is named by session and task id")
        task_id = parse_id(task_text, "task id")
        rt = self._runtime(session_text)
        task = self.manager.get_task(rt, task_id)
        if task is None:
            raise _not_found(f"task {task_text!r} does not exist in session {rt.id}")
        return rt, task

    def get_task(self, message: pb.GetTaskRequest) -> Encoded:
        return task_reply(self._task(message.task_id, message.session_id)[1])

    def delete_task(self, message: pb.DeleteTaskRequest) -> Encoded:
        self.manager.check_running()
        rt, task = self._task(message.task_id, message.session_id)
        if task.state is TaskState.RUNNING:
            raise _state(f"task {task.id} of session {rt.id} is running; wait for it to finish")
        reply = task_reply(task)
        self.manager.delete_task(rt, task)
        return reply

    async def watch_task(self, message: pb.WatchTaskRequest) -> AsyncIterator[Encoded]:
        """The task (unless pending), then once per change of state, up to Succeed or Failed."""
        rt, task = self._task(message.task_id, message.session_id)
        if task.state in FINAL_STATES:
            yield task_reply(task)
            return
        with self.manager.watch(task) as watch:
            if task.state is not TaskState.PENDING:
                # A running task's watch starts with where it is. A pending
                # one's starts with its next state, as on a v0.4 cluster: the
                # watcher knows it is pending (CreateTask said so), and that
                # is a message fewer per task.
                yield task_reply(task, task.state)
            while True:
                states = await watch.next()
                # Only the newest state is sent: one superseded before the
                # watch woke (Running, for a task that finished at once) is
                # skipped, as a v0.4 cluster may. A message fewer per task.
                if any(state in FINAL_STATES for state in states):
                    yield task_reply(task)
                    return
                if None in states:
                    raise _not_found(f"task {task.id} of session {rt.id} was deleted")
                state = states[-1]
                assert state is not None
                yield task_reply(task, state)
