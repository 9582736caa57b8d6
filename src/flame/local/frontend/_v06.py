"""The v0.6 ``flame.v1.Frontend``: Flame v0.6's rules, and its messages.

The rules are those of a v0.6 session manager with its sqlite engine, the
reference (section 6 of the wire's page), whatever this cluster's storage:

* the client names its sessions: any text is an id; CreateSession with an id
  that exists fails (INTERNAL), OpenSession gets or creates (comparing the
  spec it is given with the session's), task ids count from 1 per session;
* CloseSession cancels the Pending tasks (they become Cancelled) and refuses
  while a task is Running (INTERNAL); closing a closed session closes it
  again; DeleteSession deletes a closed session whose tasks are all done;
* tasks and sessions carry events: a task one per change of state (codes 0
  to 3, none for a cancellation), a session one per failed bind (1001) and
  one when binding is given up (1002);
* WatchTask sends a change, not the current state (but for a finished task,
  sent once); an unknown task or session ends the stream with OK and no
  message; ListTask streams every task of a session;
* times are Unix milliseconds; applications run with the Host shim, through
  the v0.6 service contract (:mod:`..shims.host`).

Refusals have the statuses a v0.6 cluster gives: NOT_FOUND, INVALID_ARGUMENT
(the FlameError codes INVALID_ARGUMENT and INVALID_STATE), INTERNAL (the
rest), with messages that say what was wrong; UNAVAILABLE while the cluster
stops. The application calls answer with a ``Result`` (-1 and a message for
a refusal) but for a malformed spec, which is INVALID_ARGUMENT.

Where this cluster differs from v0.6's sqlite engine, on purpose (the README
lists these): it keeps every time to the millisecond (sqlite keeps seconds);
it keeps an application's shim and image (sqlite forgets both); a session
closed with pending tasks can be deleted (sqlite counts Cancelled as
unfinished there, so it never can); it refuses at registration what it
cannot run (Wasm, an installer, a Host application with no command) rather
than failing every bind later; the messages of WatchTask and ListTask carry
the task's events (v0.6 may send them empty).
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs

from ..._errors import FlameError, FlameErrorCode
from ..._proto.v06.flame import v1 as pb
from ..._wire import decode_create_task, decode_get_task, decode_watch_task, encode_task_fields
from .._executors import ExecutorPool, ExecutorState
from .._model import (
    DEFAULT_DELAY_RELEASE,
    DEFAULT_MAX_INSTANCES,
    DEFAULT_RESOURCES,
    FINAL_STATES,
    Application,
    ApplicationState,
    Resources,
    Schema,
    SessionSpec,
    Shim,
    Task,
    TaskState,
    now_ms,
)
from .._sessions import SessionManager, SessionRuntime
from ..shims import supported
from ._serving import Encoded, Service, serving

__all__ = ["FrontendV06", "application_problem", "registered"]

_STATUS = {
    FlameErrorCode.NOT_FOUND: "NOT_FOUND",
    FlameErrorCode.ALREADY_EXISTS: "ALREADY_EXISTS",
    FlameErrorCode.INVALID_ARGUMENT: "INVALID_ARGUMENT",
    FlameErrorCode.INVALID_STATE: "INVALID_ARGUMENT",
    FlameErrorCode.UNAVAILABLE: "UNAVAILABLE",
}

_FAST_DECODERS: dict[str, Callable[[bytes], Any]] = {
    # The same field numbers as v0.4's requests: the same readers.
    "/flame.v1.Frontend/CreateTask": decode_create_task,
    "/flame.v1.Frontend/GetTask": decode_get_task,
    "/flame.v1.Frontend/WatchTask": decode_watch_task,
}
_ENCODED = (
    "/flame.v1.Frontend/CreateTask",
    "/flame.v1.Frontend/GetTask",
    "/flame.v1.Frontend/WatchTask",
    "/flame.v1.Frontend/ListTask",
)

#: The texts of a task's events, by the state it entered (a v0.6 cluster's).
_CREATED = "Task was created with state <Pending>"
_RUNNING = "Task state was updated to <Running>"
_SUCCEEDED = "Task was completed with state <Succeed>"
_FAILED = "Task failed with state <Failed>"

_NAME = re.compile(r"[A-Za-z0-9._-]{1,253}\Z")
_INTEGER = re.compile(r"[+-]?[0-9]{1,19}\Z")
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _not_found(message: str) -> FlameError:
    return FlameError(FlameErrorCode.NOT_FOUND, message)


def _invalid(message: str) -> FlameError:
    return FlameError(FlameErrorCode.INVALID_ARGUMENT, message)


def _internal(message: str) -> FlameError:
    return FlameError(FlameErrorCode.INTERNAL, message)


# --------------------------------------------------------------------------
# From the wire


def _name_problem(name: str) -> str | None:
    if not name:
        return "the application name is empty; give the application a name"
    if not _NAME.match(name) or ".." in name or name[0] in ".-":
        return (
            f"application name {name[:60]!r} is not valid: use 1 to 253 of A-Z, a-z, 0-9, '.', "
            "'_' and '-', not starting with '.' or '-', and no '..'"
        )
    return None


def application_problem(app: Application) -> str | None:
    """Why this wire's cluster cannot run ``app``, or None if it can."""
    if app.shim not in (Shim.HOST, Shim.WASM):
        hint = (
            " (Grpc is v0.4's name for it: write shim Host)"
            if app.shim is Shim.GRPC
            else "; Log, Stdio and Shell are v0.4's, served by a cluster on v0.4"
        )
        return (
            f"application {app.name!r} uses the {app.shim.value} shim, which v0.6 has not; "
            f"v0.6 runs Host applications{hint}"
        )
    if not supported(app.shim):
        return (
            f"application {app.name!r} uses the {app.shim.value} shim, which this cluster cannot "
            "run; it runs Host applications"
        )
    if not app.command:
        return (
            f"application {app.name!r} has no command; a Host application needs the command "
            "that starts its service"
        )
    if app.installer is not None:
        return (
            f"application {app.name!r} asks for the {app.installer!r} installer, which this "
            "cluster does not have: install the application yourself and give its command"
        )
    if app.working_directory is not None and not os.path.isabs(app.working_directory):
        return (
            f"application {app.name!r}: working_directory must be an absolute path, got: "
            f"{app.working_directory}"
        )
    return None


def registered(app: Application) -> Application:
    """``app`` as a v0.6 cluster keeps it: with the defaults of what it leaves out."""
    return attrs.evolve(
        app,
        max_instances=DEFAULT_MAX_INSTANCES if app.max_instances is None else app.max_instances,
        delay_release=DEFAULT_DELAY_RELEASE if app.delay_release is None else app.delay_release,
    )


def _schema(spec: pb.ApplicationSpec) -> Schema | None:
    if spec.schema is None:
        return None
    for field in ("input", "output", "common_data"):
        text = getattr(spec.schema, field)
        if text is None:
            continue
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise _invalid(f"invalid {field.replace('_', ' ')} schema: {exc}") from None
        if not isinstance(document, (dict, bool)):
            raise _invalid(
                f"invalid {field.replace('_', ' ')} schema: a JSON Schema is an object or a "
                f"boolean, not {type(document).__name__}"
            )
    return Schema(spec.schema.input, spec.schema.output, spec.schema.common_data)


def _application(name: str, spec: pb.ApplicationSpec | None, created: int) -> Application | str:
    """The application a spec registers; why not (for a Result); FlameError for a bad spec."""
    if spec is None:
        raise _invalid("the application spec is missing; send an ApplicationSpec")
    schema = _schema(spec)
    directory = spec.working_directory or None
    if directory is not None and not os.path.isabs(directory):
        raise _invalid(f"working_directory must be an absolute path, got: {directory}")
    problem = _name_problem(name)
    if problem is not None:
        return problem
    try:
        kind = Shim.named(pb.Shim(spec.shim).name)
    except ValueError:
        return f"application {name!r} has an unknown shim {int(spec.shim)}; one of Host, Wasm"
    app = Application(
        name=name,
        shim=kind,
        command=spec.command,
        arguments=tuple(spec.arguments),
        environments=tuple((e.name, e.value) for e in spec.environments),
        working_directory=directory,
        url=spec.url,
        description=spec.description,
        labels=tuple(spec.labels),
        image=spec.image,
        max_instances=spec.max_instances,
        delay_release=spec.delay_release,
        schema=schema,
        installer=spec.installer,
        creation_time=created,
    )
    return application_problem(app) or registered(app)


def _resources(message: pb.ResourceRequirement | None) -> Resources:
    if message is None:
        return DEFAULT_RESOURCES
    return Resources(cpu=message.cpu, memory=message.memory, gpu=message.gpu)


def _session_spec(spec: pb.SessionSpec) -> SessionSpec:
    """The spec of a session to create (or to compare), checked as v0.6 checks it."""
    batch = spec.batch_size or 1
    if batch > 1:
        if spec.min_instances % batch:
            raise _invalid(
                f"min_instances ({spec.min_instances}) must be 0 or a multiple of batch_size "
                f"({batch})"
            )
        if spec.max_instances is not None and spec.max_instances % batch:
            raise _invalid(
                f"max_instances ({spec.max_instances}) must be a multiple of batch_size ({batch})"
            )
    return SessionSpec(
        application=spec.application,
        common_data=spec.common_data,
        min_instances=spec.min_instances,
        max_instances=spec.max_instances,
        batch_size=batch,
        priority=spec.priority,
        resources=_resources(spec.resreq),
    )


def _parse_task_id(text: str) -> int:
    """The signed 64-bit integer ``text`` is, or INVALID_ARGUMENT "invalid task id"."""
    if _INTEGER.match(text):
        value = int(text)
        if _INT64[0] <= value <= _INT64[1]:
            return value
    raise _invalid(f"invalid task id {text[:40]!r}: task ids are decimal integers like '1'")


# --------------------------------------------------------------------------
# To the wire


def _resources_message(resources: Resources | None) -> pb.ResourceRequirement | None:
    if resources is None:
        return None
    return pb.ResourceRequirement(cpu=resources.cpu, memory=resources.memory, gpu=resources.gpu)


def application_message(app: Application) -> pb.Application:
    schema = app.schema
    return pb.Application(
        metadata=pb.Metadata(id=app.name, name=app.name),
        spec=pb.ApplicationSpec(
            shim=pb.Shim[app.shim.value],
            description=app.description,
            labels=list(app.labels),
            image=app.image,
            command=app.command,
            arguments=list(app.arguments),
            environments=[pb.Environment(name=n, value=v) for n, v in app.environments],
            working_directory=app.working_directory,
            max_instances=app.max_instances,
            delay_release=app.delay_release,
            schema=None
            if schema is None
            else pb.ApplicationSchema(
                input=schema.input, output=schema.output, common_data=schema.common_data
            ),
            url=app.url,
            installer=app.installer,
        ),
        status=pb.ApplicationStatus(
            state=pb.ApplicationState(int(app.state)), creation_time=app.creation_time
        ),
    )


def session_message(rt: SessionRuntime, events: bool = True) -> pb.Session:
    """The session as v0.6 shows it; Create, Open and Close answer without events."""
    session = rt.session
    spec = session.spec
    return pb.Session(
        metadata=pb.Metadata(id=session.id, name=session.id),
        spec=pb.SessionSpec(
            application=spec.application,
            common_data=spec.common_data,
            min_instances=spec.min_instances,
            max_instances=spec.max_instances,
            batch_size=spec.batch_size,
            priority=spec.priority,
            resreq=_resources_message(spec.resources),
        ),
        status=pb.SessionStatus(
            state=pb.SessionState(int(session.state)),
            creation_time=session.creation_time,
            completion_time=session.completion_time,
            pending=session.pending,
            running=session.running,
            succeed=session.succeed,
            failed=session.failed,
            cancelled=session.cancelled,
            events=[
                pb.Event(code=e.code, message=e.message, creation_time=e.creation_time)
                for e in session.events
            ]
            if events
            else [],
        ),
    )


def task_reply(task: Task, events: bool = True) -> Encoded:
    """The task as a v0.6 ``Task``, with its events (CreateTask answers without them)."""
    history: list[tuple[int, str | None, int]] = []
    if events:
        history.append((0, _CREATED, task.creation_time))
        if task.running_time is not None:
            history.append((1, _RUNNING, task.running_time))
        state = task.state
        if state is TaskState.SUCCEED:
            history.append((2, _SUCCEEDED, task.completion_time or 0))
        elif state is TaskState.FAILED:
            history.append((3, task.message or _FAILED, task.completion_time or 0))
    return Encoded(
        encode_task_fields(
            str(task.id),
            task.session_id,
            task.input,
            task.output,
            task.state,
            task.creation_time,
            task.completion_time,
            history,
        )
    )


_EXECUTOR_STATES = {
    ExecutorState.IDLE: pb.ExecutorState.ExecutorIdle,
    ExecutorState.BINDING: pb.ExecutorState.ExecutorBinding,
    ExecutorState.BOUND: pb.ExecutorState.ExecutorBound,
    ExecutorState.UNBINDING: pb.ExecutorState.ExecutorUnbinding,
}


def _memory() -> int:
    """This machine's memory in bytes (0 where the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 0


# --------------------------------------------------------------------------
# The service


class FrontendV06:
    """Every method of v0.6's ``Frontend``, on a :class:`SessionManager` and its executors."""

    def __init__(self, manager: SessionManager, pool: ExecutorPool) -> None:
        self.manager = manager
        self.pool = pool
        memory = _memory()
        slots = len(pool.slots)
        #: The one node: this machine, as much of it as the cluster's slots.
        self._capacity = pb.ResourceRequirement(cpu=slots, memory=memory, gpu=0)
        self._slot_resources = pb.ResourceRequirement(cpu=1, memory=memory // max(slots, 1), gpu=0)
        self._info = pb.NodeInfo(arch=platform.machine(), os=platform.system().lower())

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
        app = _application(message.name, message.application, now_ms())
        if isinstance(app, str):
            return pb.Result(return_code=-1, message=app)
        if manager.stopped:
            return pb.Result(return_code=-1, message="the cluster is stopping; try again later")
        if manager.application(app.name) is not None:
            return pb.Result(
                return_code=-1,
                message=f"failed to register application: application {app.name!r} is already "
                "registered; unregister it first",
            )
        manager.save_application(app)
        return pb.Result(return_code=0)

    def update_application(self, message: pb.UpdateApplicationRequest) -> pb.Result:
        manager = self.manager
        manager.check_running()
        app = _application(message.name, message.application, 0)
        if isinstance(app, str):
            return pb.Result(return_code=-1, message=app)
        known = manager.application(app.name)
        if known is None:
            return pb.Result(
                return_code=-1, message=f"application {message.name!r} is not registered"
            )
        users = manager.open_sessions_of(app.name)
        if users:
            return pb.Result(
                return_code=-1, message=f"{len(users)} open sessions in the application"
            )
        manager.save_application(
            attrs.evolve(app, creation_time=known.creation_time, state=known.state)
        )
        return pb.Result(return_code=0)

    def unregister_application(self, message: pb.UnregisterApplicationRequest) -> pb.Result:
        manager = self.manager
        manager.check_running()
        if manager.application(message.name) is None:
            return pb.Result(return_code=0)
        users = manager.open_sessions_of(message.name)
        if users:
            return pb.Result(
                return_code=-1, message=f"{len(users)} open sessions in the application"
            )
        # Its closed sessions go with it, and their tasks.
        for rt in manager.sessions_of(message.name):
            manager.delete_session(rt)
        manager.unregister_application(message.name)
        return pb.Result(return_code=0)

    def get_application(self, message: pb.GetApplicationRequest) -> pb.Application:
        app = self.manager.application(message.name)
        if app is None:
            raise _not_found(f"application {message.name} not found")
        return application_message(app)

    def list_application(self, message: pb.ListApplicationRequest) -> pb.ApplicationList:
        return pb.ApplicationList(
            applications=[application_message(app) for app in self.manager.applications()]
        )

    # -- executors and nodes -----------------------------------------------

    def list_executor(self, message: pb.ListExecutorRequest) -> pb.ExecutorList:
        pool = self.pool
        return pb.ExecutorList(
            executors=[
                pb.Executor(
                    metadata=pb.Metadata(id=slot.id, name=slot.id),
                    spec=pb.ExecutorSpec(
                        node=pool.node, resreq=self._slot_resources, shim=pb.Shim.Host
                    ),
                    status=pb.ExecutorStatus(
                        state=_EXECUTOR_STATES[slot.state], session_id=slot.session_id
                    ),
                )
                for slot in pool.slots
            ]
        )

    def _node(self) -> pb.Node:
        name = self.pool.node
        return pb.Node(
            metadata=pb.Metadata(id=name, name=name),
            spec=pb.NodeSpec(hostname=name),
            status=pb.NodeStatus(
                state=pb.NodeState.Ready,
                capacity=self._capacity,
                allocatable=self._capacity,
                info=self._info,
            ),
        )

    def list_nodes(self, message: pb.ListNodesRequest) -> pb.NodeList:
        return pb.NodeList(nodes=[self._node()])

    def get_node(self, message: pb.GetNodeRequest) -> pb.GetNodeResponse:
        if message.name != self.pool.node:
            raise _not_found(f"node {message.name} not found")
        return pb.GetNodeResponse(node=self._node())

    # -- sessions --------------------------------------------------------

    def _create(self, session_id: str, spec: pb.SessionSpec) -> SessionRuntime:
        manager = self.manager
        manager.check_running()
        wanted = _session_spec(spec)
        if manager.runtime(session_id) is not None:
            raise _internal(f"failed to create session: session {session_id!r} already exists")
        app = manager.application(spec.application)
        if app is None:
            raise _internal(
                f"failed to create session {session_id!r}: application {spec.application!r} "
                "is not registered"
            )
        if app.state is not ApplicationState.ENABLED:
            raise _internal(
                f"failed to create session {session_id!r}: application {spec.application!r} "
                "is disabled"
            )
        return manager.create_session(session_id, wanted, app)

    def create_session(self, message: pb.CreateSessionRequest) -> pb.Session:
        if message.session is None:
            raise _invalid("session spec")
        return session_message(self._create(message.session_id, message.session), events=False)

    def open_session(self, message: pb.OpenSessionRequest) -> pb.Session:
        """Get the session, or create it when a spec is given and it does not exist."""
        session_id = message.session_id
        rt = self.manager.runtime(session_id)
        if rt is None:
            if message.session is None:
                raise _not_found(f"session {session_id} not found")
            rt = self._create(session_id, message.session)
        elif not rt.is_open:
            raise _invalid(f"session {session_id} is not open")
        elif message.session is not None:
            _same_spec(session_id, rt.session.spec, _session_spec(message.session))
        return session_message(rt, events=False)

    def _runtime(self, session_id: str) -> SessionRuntime:
        rt = self.manager.runtime(session_id)
        if rt is None:
            raise _not_found(f"session {session_id}")
        return rt

    def close_session(self, message: pb.CloseSessionRequest) -> pb.Session:
        manager = self.manager
        manager.check_running()
        rt = self._runtime(message.session_id)
        if rt.session.running:
            raise _internal("Cannot close session with running tasks")
        manager.close_session(rt)
        return session_message(rt, events=False)

    def delete_session(self, message: pb.DeleteSessionRequest) -> pb.Session:
        manager = self.manager
        manager.check_running()
        rt = self._runtime(message.session_id)
        session = rt.session
        unfinished = session.pending + session.running
        if unfinished:
            raise _internal(f"{unfinished} open tasks in the session")
        if rt.is_open:
            raise _internal(
                f"failed to delete session {rt.id!r}: it is open; close it before deleting it"
            )
        reply = session_message(rt, events=False)
        manager.delete_session(rt)
        return reply

    def get_session(self, message: pb.GetSessionRequest) -> pb.Session:
        rt = self.manager.runtime(message.session_id)
        if rt is None:
            raise _not_found(message.session_id)
        return session_message(rt)

    def list_session(self, message: pb.ListSessionRequest) -> pb.SessionList:
        return pb.SessionList(sessions=[session_message(rt) for rt in self.manager.runtimes()])

    # -- tasks -----------------------------------------------------------

    def create_task(self, message: Any) -> Encoded:
        manager = self.manager
        manager.check_running()
        spec = message.task
        if spec is None:
            raise _invalid("session spec")
        rt = manager.runtime(spec.session_id)
        if rt is None:
            raise _internal(f"failed to create task: session {spec.session_id!r} does not exist")
        if not rt.is_open:
            raise _internal(f"failed to create task: session {spec.session_id!r} is closed")
        # TaskSpec.output is not the client's to set.
        return task_reply(manager.create_task(rt, spec.input), events=False)

    def get_task(self, message: Any) -> Encoded:
        task_id = _parse_task_id(message.task_id)
        rt = self.manager.runtime(message.session_id)
        if rt is None:
            raise _not_found(message.session_id)
        task = self.manager.get_task(rt, task_id)
        if task is None:
            raise _not_found(str(task_id))
        return task_reply(task)

    async def watch_task(self, message: Any) -> AsyncIterator[Encoded]:
        """Each change of the task's state, up to a final one; nothing for an unknown task."""
        task_id = _parse_task_id(message.task_id)
        rt = self.manager.runtime(message.session_id)
        task = None if rt is None else self.manager.get_task(rt, task_id)
        if task is None:
            return
        if task.state in FINAL_STATES:
            yield task_reply(task)
            return
        with self.manager.watch(task) as watch:
            seen = task.state
            while True:
                states = await watch.next()
                if None in states:
                    return  # deleted while watched: the stream ends, as v0.6's does
                if task.state is not seen or task.state in FINAL_STATES:
                    seen = task.state
                    yield task_reply(task)
                if seen in FINAL_STATES:
                    return

    async def list_task(self, message: pb.ListTaskRequest) -> AsyncIterator[Encoded]:
        """Every task of the session, as it is when sent; the tasks are those of the call's time."""
        rt = self.manager.runtime(message.session_id)
        if rt is None:
            raise _not_found(message.session_id)
        for task in list(self.manager.tasks(rt)):
            yield task_reply(task)


def _same_spec(session_id: str, known: SessionSpec, given: SessionSpec) -> None:
    """Refuse ``given`` unless it matches what ``known`` was created with (not common_data)."""
    for field in (
        "application",
        "resources",
        "min_instances",
        "max_instances",
        "batch_size",
        "priority",
    ):
        expected, got = getattr(known, field), getattr(given, field)
        if expected != got:
            name = "resreq" if field == "resources" else field
            raise _invalid(
                f"session {session_id} spec mismatch: {name} differs (expected {_shown(expected)}, "
                f"got {_shown(got)})"
            )


def _shown(value: object) -> str:
    if isinstance(value, Resources):
        return f"cpu={value.cpu},mem={value.memory},gpu={value.gpu}"
    return repr(value) if isinstance(value, str) else str(value)
