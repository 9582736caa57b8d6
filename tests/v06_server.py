"""Test servers that answer as Flame v0.6 and v0.5 session managers do.

Built from the behaviour tables of the wire contract (``flame-v0.6.md``,
"How the v0.6.0 session manager behaves" and "Server behaviour in v0.5.0"),
storage as with sqlite except that applications keep their shim and image.

v0.6 (:class:`V06Frontend`, package ``flame.v1``, times in milliseconds):

* the client chooses session ids, taken as they are; a duplicate id, an
  unknown application, a task on a closed or unknown session, and closing a
  session with a running task are refused with INTERNAL;
* CloseSession turns Pending tasks into Cancelled and closes; closing a
  closed session succeeds again; DeleteSession only a closed session whose
  tasks all succeeded or failed;
* OpenSession gets or creates, comparing a given spec with the session's
  (application, resolved resreq, min and max instances, batch_size,
  priority); a closed session is INVALID_ARGUMENT "session <id> is not open";
* WatchTask does not send the current state first; an unknown session or
  task ends the stream with OK and no message; a bad task id is
  INVALID_ARGUMENT "invalid task id";
* ListTask sends every task in no particular order (shuffled here);
* events as the contract lists them: a task's 0 (created), 1 (running),
  2 (succeeded), 3 (failed, with the service's message); GetTask carries
  them, WatchTask and ListTask only once a GetTask loaded them; a session of
  an application whose command is ``fail-bind`` records event 1001 when a
  task arrives, and its tasks stay pending;
* ListApplication starts with ``flmexec``, ``flmping``, ``flmrun``;
  ListExecutor and ListNodes report two executors on one node.

v0.5 (:class:`V05Frontend`, package ``flame``, times in seconds): the
server makes session ids (integers from 1; others are INVALID_ARGUMENT
"invalid session id"); every refusal but "not found" is UNKNOWN with its
text; CloseSession needs every task finished; OpenSession and DeleteTask
panic, which the client sees as its stream reset; there is no Cancelled,
ListTask or ListNodes; events only when a task changes state.

Tasks run by their input, as in ``v04_server``: ``b"fail:<text>"`` fails
with ``<text>`` as the service's message (and no output); ``b"hold"`` runs
until :meth:`WireServer.release`; ``b"steps"`` stays pending until the
first release and runs until the next; ``b"hang"`` runs until the server
stops; the watch of ``b"cut"`` (which succeeds at once) and of
``b"cut-hold"`` (held) ends without a message; anything else succeeds at
once with its input as its output.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import grpclib
import grpclib.const
from grpclib.const import Status

from flame._proto.v05 import flame as v05
from flame._proto.v06.flame import v1 as v06
from flame._transport import GrpcLoop, open_grpc_loop, serve

GIB = 1 << 30
NODE = "node-1"
HOST = "host-1"
DEFAULT_APPLICATIONS = ("flmexec", "flmping", "flmrun")


class _Task:
    def __init__(self, server: _Frontend, task_id: int, session: _Session, data: bytes | None):
        self.server = server
        self.id = task_id
        self.session = session
        self.input = data
        self.output: bytes | None = None
        self.state = 0
        self.creation_time = server.now()
        self.completion_time: int | None = None
        self.events: list[Any] = []
        self.events_loaded = False  # v0.6: streamed tasks carry events once GetTask loaded them
        self.changed = anyio.Event()
        server.task_event(self, 0, "Task was created with state <Pending>")

    def set(self, state: int, output: bytes | None = None, message: str | None = None) -> None:
        server = self.server
        self.state = state
        if state >= 2:
            self.output = output
            self.completion_time = server.now()
        if state == 1:
            server.task_event(self, 1, server.running_text)
        elif state == 2:
            server.task_event(self, 2, server.succeed_text)
        elif state == 3:
            server.task_event(self, 3, message or "Task failed with state <Failed>")
        changed, self.changed = self.changed, anyio.Event()
        changed.set()

    @property
    def done(self) -> bool:
        return self.state >= 2

    def message(self, *, events: bool = True) -> Any:
        pb = self.server.pb
        return pb.Task(
            metadata=pb.Metadata(id=str(self.id), name=str(self.id)),
            spec=pb.TaskSpec(session_id=self.session.id, input=self.input, output=self.output),
            status=pb.TaskStatus(
                state=pb.TaskState(self.state),
                creation_time=self.creation_time,
                completion_time=self.completion_time,
                events=list(self.events) if events else [],
            ),
        )


class _Session:
    def __init__(self, server: _Frontend, session_id: str, spec: Any) -> None:
        self.server = server
        self.id = session_id
        self.spec = spec
        self.state = 0  # Open
        self.creation_time = server.now()
        self.completion_time: int | None = None
        self.tasks: dict[int, _Task] = {}
        self.events: list[Any] = []

    def message(self, *, events: bool = False) -> Any:
        pb = self.server.pb
        counts = [0] * 5
        for task in self.tasks.values():
            counts[task.state] += 1
        status: dict[str, Any] = {
            "state": pb.SessionState(self.state),
            "creation_time": self.creation_time,
            "completion_time": self.completion_time,
            "pending": counts[0],
            "running": counts[1],
            "succeed": counts[2],
            "failed": counts[3],
            "events": list(self.events) if events else [],
        }
        if self.server.wire == "v0.6":
            status["cancelled"] = counts[4]
        return pb.Session(
            metadata=pb.Metadata(id=self.id, name=self.id),
            spec=self.spec,
            status=pb.SessionStatus(**status),
        )


class _Frontend:
    """What the v0.5 and v0.6 Frontends share; the wire's habits are in the subclasses."""

    wire: str
    pb: Any
    scale: int  # time units per second
    running_text: str
    succeed_text: str

    def __init__(self) -> None:
        self.applications: dict[str, Any] = {}
        self.sessions: dict[str, _Session] = {}
        self.calls: list[str] = []
        self.active_watches = 0
        self.executors = [str(uuid.UUID(int=n + 1)) for n in range(2)]
        self._group: anyio.abc.TaskGroup | None = None
        self._released: anyio.Event | None = None

    # -- wire habits --------------------------------------------------------------

    def now(self) -> int:
        return int(time.time() * self.scale)

    def refuse(self, message: str) -> grpclib.GRPCError:
        """How this wire refuses what the state of things forbids."""
        raise NotImplementedError

    def task_event(self, task: _Task, code: int, message: str) -> None:
        task.events.append(self.pb.Event(code=code, message=message, creation_time=self.now()))

    # -- running tasks --------------------------------------------------------------

    async def run_executor(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with anyio.create_task_group() as group:
            self._group = group
            self._released = anyio.Event()
            task_status.started()
            await anyio.sleep_forever()

    async def _released_wait(self) -> None:
        assert self._released is not None
        await self._released.wait()

    async def _execute(self, task: _Task) -> None:
        await anyio.lowlevel.checkpoint()
        data = task.input or b""
        if data == b"steps":
            await self._released_wait()
        if task.state != 0:
            return  # cancelled meanwhile
        task.set(1)
        if data == b"hang":
            await anyio.sleep_forever()
        if data in (b"hold", b"steps", b"cut-hold"):
            await self._released_wait()
        if data.startswith(b"fail:"):
            task.set(3, None, data[5:].decode())
        else:
            task.set(2, data)

    def release(self) -> None:
        """Let every held task finish (call it on the grpc loop)."""
        assert self._released is not None
        self._released.set()
        self._released = anyio.Event()

    # -- lookups ----------------------------------------------------------------------

    def _session(self, session_id: str) -> _Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise grpclib.GRPCError(Status.NOT_FOUND, session_id)
        return session

    def _task_number(self, value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, "invalid task id") from None
        if not -(1 << 63) <= number < 1 << 63:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, "invalid task id")
        return number

    def _application_message(self, name: str, spec: Any) -> Any:
        pb = self.pb
        return pb.Application(
            metadata=pb.Metadata(id=name, name=name),
            spec=spec,
            status=pb.ApplicationStatus(
                state=pb.ApplicationState.Enabled, creation_time=self.now()
            ),
        )

    # -- applications ---------------------------------------------------------------------

    async def register_application(self, message: Any) -> Any:
        self.calls.append("RegisterApplication")
        pb = self.pb
        if message.application is None:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, "applilcation spec is missed")
        directory = message.application.working_directory
        if directory and not directory.startswith("/"):
            raise grpclib.GRPCError(
                Status.INVALID_ARGUMENT,
                f"working_directory must be an absolute path, got: {directory}",
            )
        if message.name in self.applications:
            return pb.Result(
                return_code=-1,
                message=f"failed to register application: UNIQUE constraint failed: "
                f"applications.name ({message.name})",
            )
        spec = message.application
        if self.wire == "v0.6":
            # The server returns both as set, with its defaults.
            if spec.max_instances is None:
                spec.max_instances = 1_000_000
            if spec.delay_release is None:
                spec.delay_release = 60
        self.applications[message.name] = self._application_message(message.name, spec)
        return pb.Result(return_code=0)

    async def unregister_application(self, message: Any) -> Any:
        self.calls.append("UnregisterApplication")
        opened = sum(
            1 for s in self.sessions.values() if s.spec.application == message.name and s.state == 0
        )
        if opened:
            return self.pb.Result(
                return_code=-1, message=f"{opened} open sessions in the application"
            )
        self.applications.pop(message.name, None)
        return self.pb.Result(return_code=0)

    async def update_application(self, message: Any) -> Any:
        self.calls.append("UpdateApplication")
        if message.name not in self.applications:
            return self.pb.Result(return_code=-1, message=f"application {message.name} not found")
        self.applications[message.name] = self._application_message(
            message.name, message.application
        )
        return self.pb.Result(return_code=0)

    async def get_application(self, message: Any) -> Any:
        self.calls.append("GetApplication")
        application = self.applications.get(message.name)
        if application is None:
            raise grpclib.GRPCError(Status.NOT_FOUND, f"application {message.name} not found")
        return application

    async def list_application(self, message: Any) -> Any:
        self.calls.append("ListApplication")
        return self.pb.ApplicationList(applications=list(self.applications.values()))

    # -- executors ---------------------------------------------------------------------------

    def _executor_state(self, index: int) -> tuple[int, str | None]:
        running = [
            task
            for session in self.sessions.values()
            for task in session.tasks.values()
            if task.state == 1
        ]
        if index < len(running):
            return 4, running[index].session.id  # Bound
        return 2, None  # Idle

    async def list_executor(self, message: Any) -> Any:
        self.calls.append("ListExecutor")
        pb = self.pb
        executors = []
        for index, executor_id in enumerate(self.executors):
            state, session_id = self._executor_state(index)
            spec: dict[str, Any] = {
                "node": NODE,
                "resreq": pb.ResourceRequirement(cpu=1, memory=2 * GIB),
            }
            if self.wire == "v0.6":
                spec["shim"] = pb.Shim.Host
                spec["resreq"].gpu = 0
            else:
                spec["slots"] = 1
            executors.append(
                pb.Executor(
                    metadata=pb.Metadata(id=executor_id, name=executor_id),
                    spec=pb.ExecutorSpec(**spec),
                    status=pb.ExecutorStatus(state=pb.ExecutorState(state), session_id=session_id),
                )
            )
        return pb.ExecutorList(executors=executors)

    # -- tasks ----------------------------------------------------------------------------------

    def _new_task(self, session: _Session, data: bytes | None) -> _Task:
        task = _Task(self, len(session.tasks) + 1, session, data)
        session.tasks[task.id] = task
        application = self.applications.get(session.spec.application)
        command = application.spec.command if application is not None else None
        if command == "fail-bind":
            self.bind_failed(session)
        else:
            assert self._group is not None
            self._group.start_soon(self._execute, task)
        return task

    def bind_failed(self, session: _Session) -> None:
        """Nothing to record on v0.5, which has no session events."""

    async def get_session(self, message: Any) -> Any:
        self.calls.append("GetSession")
        return self._session(message.session_id).message(events=True)

    async def list_session(self, message: Any) -> Any:
        self.calls.append("ListSession")
        pb = self.pb
        return pb.SessionList(sessions=[s.message(events=True) for s in self.sessions.values()])

    async def get_task(self, message: Any) -> Any:
        self.calls.append("GetTask")
        number = self._task_number(message.task_id)
        session = self._session(message.session_id)
        task = session.tasks.get(number)
        if task is None:
            raise grpclib.GRPCError(Status.NOT_FOUND, str(number))
        task.events_loaded = True
        return task.message()

    async def watch_task(self, message: Any) -> AsyncIterator[Any]:
        self.calls.append("WatchTask")
        number = self._task_number(message.task_id)
        session = self.sessions.get(message.session_id)
        task = None if session is None else session.tasks.get(number)
        if task is None or (task.input or b"").startswith(b"cut"):
            return  # OK and no message: the error is only logged
        self.active_watches += 1
        try:
            if task.done:
                yield task.message(events=task.events_loaded)
                return
            sent = task.state  # the current state is not sent first
            while True:
                changed = task.changed
                if task.state != sent:
                    sent = task.state
                    yield task.message(events=task.events_loaded)
                    if task.done:
                        return
                else:
                    await changed.wait()
        finally:
            self.active_watches -= 1


class V06Frontend(_Frontend, v06.FrontendBase):
    """The ``flame.v1.Frontend`` service, v0.6 style. Runs on the grpc loop."""

    wire = "v0.6"
    pb = v06
    scale = 1000
    running_text = "Task state was updated to <Running>"
    succeed_text = "Task was completed with state <Succeed>"

    def __init__(self) -> None:
        super().__init__()
        for name in DEFAULT_APPLICATIONS:
            spec = v06.ApplicationSpec(
                shim=v06.Shim.Host,
                command="/usr/local/flame/bin/" + name,
                max_instances=1_000_000,
                delay_release=60,
            )
            self.applications[name] = self._application_message(name, spec)

    def refuse(self, message: str) -> grpclib.GRPCError:
        return grpclib.GRPCError(Status.INTERNAL, message)

    def bind_failed(self, session: _Session) -> None:
        session.events.append(
            v06.Event(
                code=1001,
                message=f"Executor {self.executors[0]} on node {NODE} failed to bind session "
                "with return_code 12: OnSessionEnter failed",
                creation_time=self.now(),
            )
        )

    def _resolved(self, spec: Any) -> Any:
        """The spec as the server keeps it: resreq filled in, batch_size 0 made 1."""
        resreq = spec.resreq or v06.ResourceRequirement(cpu=1, memory=GIB, gpu=0)
        return v06.SessionSpec(
            application=spec.application,
            common_data=spec.common_data,
            min_instances=spec.min_instances,
            max_instances=spec.max_instances,
            batch_size=spec.batch_size or 1,
            priority=spec.priority,
            resreq=resreq,
        )

    def _create(self, session_id: str, spec: Any) -> _Session:
        application = self.applications.get(spec.application)
        if session_id in self.sessions:
            raise self.refuse(
                "error returned from database: (code: 1555) UNIQUE constraint failed: sessions.id"
            )
        if application is None or application.status.state != v06.ApplicationState.Enabled:
            raise self.refuse(
                "error returned from database: (code: 1299) NOT NULL constraint failed: "
                "sessions.application"
            )
        session = _Session(self, session_id, self._resolved(spec))
        self.sessions[session_id] = session
        return session

    async def create_session(self, message: Any) -> Any:
        self.calls.append("CreateSession")
        if message.session is None:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, "session spec")
        return self._create(message.session_id, message.session).message()

    async def open_session(self, message: Any) -> Any:
        self.calls.append("OpenSession")
        session = self.sessions.get(message.session_id)
        if session is not None and session.state == 0:
            if message.session is not None:
                self._compare(session, self._resolved(message.session))
            return session.message()
        if session is not None:
            raise grpclib.GRPCError(
                Status.INVALID_ARGUMENT, f"session {message.session_id} is not open"
            )
        if message.session is None:
            raise grpclib.GRPCError(Status.NOT_FOUND, f"session {message.session_id} not found")
        return self._create(message.session_id, message.session).message()

    def _compare(self, session: _Session, spec: Any) -> None:
        for field in (
            "application",
            "resreq",
            "min_instances",
            "max_instances",
            "batch_size",
            "priority",
        ):
            expected, got = getattr(session.spec, field), getattr(spec, field)
            if expected != got:
                raise grpclib.GRPCError(
                    Status.INVALID_ARGUMENT,
                    f"session {session.id} spec mismatch: {field} differs "
                    f"(expected {expected}, got {got})",
                )

    async def close_session(self, message: Any) -> Any:
        self.calls.append("CloseSession")
        session = self.sessions.get(message.session_id)
        if session is None:
            raise grpclib.GRPCError(Status.NOT_FOUND, f"session {message.session_id}")
        if any(task.state == 1 for task in session.tasks.values()):
            raise self.refuse("Cannot close session with running tasks")
        now = self.now()
        for task in session.tasks.values():
            if task.state == 0:  # no event is recorded for a cancellation
                task.state = 4
                task.completion_time = now
                changed, task.changed = task.changed, anyio.Event()
                changed.set()
        session.state = 1
        session.completion_time = now
        return session.message()

    async def delete_session(self, message: Any) -> Any:
        self.calls.append("DeleteSession")
        session = self.sessions.get(message.session_id)
        if session is None:
            raise grpclib.GRPCError(Status.NOT_FOUND, f"session {message.session_id}")
        unfinished = sum(1 for task in session.tasks.values() if task.state not in (2, 3))
        if unfinished:
            raise self.refuse(f"{unfinished} open tasks in the session")
        if session.state != 1:
            raise self.refuse(
                "failed to close session: no rows returned by a query that expected to return "
                "at least one row"
            )
        del self.sessions[session.id]
        answer = session.message()
        answer.status.events = []
        return answer

    async def create_task(self, message: Any) -> Any:
        self.calls.append("CreateTask")
        if message.task is None:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, "session spec")
        session = self.sessions.get(message.task.session_id)
        if session is None or session.state != 0:
            raise self.refuse(
                "error returned from database: (code: 1299) NOT NULL constraint failed: "
                "tasks.ssn_id"
            )
        return self._new_task(session, message.task.input).message(events=False)

    async def list_task(self, message: Any) -> AsyncIterator[Any]:
        self.calls.append("ListTask")
        session = self._session(message.session_id)
        tasks = list(session.tasks.values())
        random.shuffle(tasks)  # no particular order
        for task in tasks:
            yield task.message(events=task.events_loaded)

    def _node(self) -> Any:
        capacity = v06.ResourceRequirement(cpu=2, memory=4 * GIB, gpu=0)
        return v06.Node(
            metadata=v06.Metadata(id=NODE, name=NODE),
            spec=v06.NodeSpec(hostname=NODE),
            status=v06.NodeStatus(
                state=v06.NodeState.Ready,
                capacity=capacity,
                allocatable=capacity,
                info=v06.NodeInfo(arch="x86_64", os="linux"),
                last_heartbeat_time=0,
            ),
        )

    async def list_nodes(self, message: Any) -> Any:
        self.calls.append("ListNodes")
        return v06.NodeList(nodes=[self._node()])

    async def get_node(self, message: Any) -> Any:
        self.calls.append("GetNode")
        if message.name != NODE:
            raise grpclib.GRPCError(Status.NOT_FOUND, f"node {message.name} not found")
        return v06.GetNodeResponse(node=self._node())


class V05Frontend(_Frontend, v05.FrontendBase):
    """The ``flame.Frontend`` service, v0.5 style. Runs on the grpc loop."""

    wire = "v0.5"
    pb = v05
    scale = 1
    running_text = f"Running task on host {HOST}."
    succeed_text = f"Task completed successfully on host {HOST}."

    def refuse(self, message: str) -> grpclib.GRPCError:
        return grpclib.GRPCError(Status.UNKNOWN, message)

    def task_event(self, task: _Task, code: int, message: str) -> None:
        if code != 0:  # v0.5 records no creation event
            super().task_event(task, code, message)

    def _session_id(self, value: str) -> str:
        try:
            int(value)
        except ValueError:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, "invalid session id") from None
        return value

    def _session(self, session_id: str) -> _Session:
        return super()._session(self._session_id(session_id))

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        mapping: dict[str, grpclib.const.Handler] = super().__mapping__()
        for method in ("OpenSession", "DeleteTask"):
            path = f"/flame.Frontend/{method}"
            handler = mapping[path]
            mapping[path] = grpclib.const.Handler(
                self._panic, handler.cardinality, handler.request_type, handler.reply_type
            )
        return mapping

    async def _panic(self, stream: Any) -> None:
        # v0.5.0's handler is todo!(): it panics, and the call's stream is
        # reset without a status.
        await stream.recv_message()
        self.calls.append("panic")
        await stream.cancel()

    async def create_session(self, message: Any) -> Any:
        self.calls.append("CreateSession")
        if message.session is None:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, "session spec")
        application = self.applications.get(message.session.application)
        if application is None:
            raise self.refuse(
                "error returned from database: (code: 787) FOREIGN KEY constraint failed"
            )
        session = _Session(self, str(len(self.sessions) + 1), message.session)
        self.sessions[session.id] = session
        return session.message()

    async def close_session(self, message: Any) -> Any:
        self.calls.append("CloseSession")
        session = self.sessions.get(self._session_id(message.session_id))
        if session is None or any(not task.done for task in session.tasks.values()):
            raise self.refuse(
                "no rows returned by a query that expected to return at least one row"
            )
        session.state = 1
        session.completion_time = self.now()
        return session.message()

    async def delete_session(self, message: Any) -> Any:
        self.calls.append("DeleteSession")
        session = self._session(message.session_id)
        if session.state != 1 or any(not task.done for task in session.tasks.values()):
            raise self.refuse(
                "no rows returned by a query that expected to return at least one row"
            )
        del self.sessions[session.id]
        return session.message()

    async def create_task(self, message: Any) -> Any:
        self.calls.append("CreateTask")
        if message.task is None:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, "task spec")
        session = self.sessions.get(self._session_id(message.task.session_id))
        if session is None or session.state != 0:
            raise self.refuse(
                "error returned from database: (code: 787) FOREIGN KEY constraint failed"
            )
        return self._new_task(session, message.task.input).message()

    async def get_task(self, message: Any) -> Any:
        self._session_id(message.session_id)
        return await super().get_task(message)


class WireServer:
    """A running v0.5 or v0.6 Frontend, with helpers that work from either backend."""

    def __init__(self, frontend: _Frontend, loop: GrpcLoop, endpoint: str) -> None:
        self.frontend = frontend
        self.loop = loop
        self.endpoint = endpoint
        self.wire = frontend.wire

    async def on_loop(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` on the server's loop, where its state lives."""

        async def call() -> Any:
            return fn()

        return await self.loop.run(call)

    async def release(self) -> None:
        """Let every held task finish."""
        await self.on_loop(self.frontend.release)

    async def calls(self) -> list[str]:
        """The calls the server answered so far, in order."""
        return list(await self.on_loop(lambda: self.frontend.calls))

    async def active_watches(self) -> int:
        """How many WatchTask handlers are running now."""
        return int(await self.on_loop(lambda: self.frontend.active_watches))

    async def wait_for_watches(self, count: int) -> None:
        """Wait until exactly ``count`` WatchTask handlers run (a hang guard bounds it)."""
        with anyio.fail_after(20):
            while await self.active_watches() != count:  # noqa: ASYNC110
                await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def serve_wire(wire: str, *, ssl: Any = None, port: int = 0) -> AsyncIterator[WireServer]:
    """Serve the Frontend of ``wire`` (``"v0.5"`` or ``"v0.6"``) on 127.0.0.1 (0: a free port)."""
    loop = open_grpc_loop()
    try:
        frontend: _Frontend = V06Frontend() if wire == "v0.6" else V05Frontend()
        async with (
            loop.background(frontend.run_executor),
            serve(loop, [frontend], ssl=ssl, port=port) as server,
        ):
            scheme = "https" if ssl is not None else "http"
            endpoint = server.address.replace("http://", f"{scheme}://", 1)
            yield WireServer(frontend, loop, endpoint)
    finally:
        await loop.aclose()


def serve_v06(
    *, ssl: Any = None, port: int = 0
) -> contextlib.AbstractAsyncContextManager[WireServer]:
    """Serve a :class:`V06Frontend` for the ``async with``."""
    return serve_wire("v0.6", ssl=ssl, port=port)


def serve_v05() -> contextlib.AbstractAsyncContextManager[WireServer]:
    """Serve a :class:`V05Frontend` for the ``async with``."""
    return serve_wire("v0.5")
