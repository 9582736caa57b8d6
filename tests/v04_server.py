"""A test server that answers as a Flame v0.4 session manager does.

It keeps the v0.4 habits a client must live with (see "How a v0.4 session
manager behaves" in the wire contract):

* refusals other than "not found" are gRPC UNKNOWN with the text "unknown";
  unknown ids are NOT_FOUND; ids that are not integers are INVALID_ARGUMENT;
* RegisterApplication answers with a ``Result`` whose ``return_code`` is -1
  and whose ``message`` says why, never with a gRPC error;
* WatchTask does not send the current state first, sends the state the task
  is in when the watcher wakes (so a short state may be skipped), and a task
  already finished gives one message and the end;
* UnregisterApplication, UpdateApplication, GetApplication, OpenSession and
  DeleteTask are unimplemented.

Tasks run by their input: ``b"fail:<text>"`` fails with ``<text>`` as its
output; ``b"hold"`` runs until :meth:`V04Server.release` is called;
``b"steps"`` stays pending until the first release and runs until the next;
``b"hang"`` runs until the server stops; the watch of ``b"cut"`` (which
succeeds at once) and of ``b"cut-hold"`` (held) ends without a message;
anything else succeeds at once with its input as its output.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import grpclib
from grpclib.const import Status

from flame._proto.v04 import flame as pb
from flame._transport import GrpcLoop, open_grpc_loop, serve


def _unknown() -> grpclib.GRPCError:
    return grpclib.GRPCError(Status.UNKNOWN, "unknown")


def _parse_id(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise grpclib.GRPCError(Status.INVALID_ARGUMENT, f"invalid {what}") from None


class _Task:
    def __init__(self, task_id: int, session_id: int, data: bytes | None) -> None:
        self.id = task_id
        self.session_id = session_id
        self.input = data
        self.output: bytes | None = None
        self.state = pb.TaskState.Pending
        self.creation_time = int(time.time())
        self.completion_time: int | None = None
        self.changed = anyio.Event()

    def set(self, state: pb.TaskState, output: bytes | None = None) -> None:
        self.state = state
        if state in (pb.TaskState.Succeed, pb.TaskState.Failed):
            self.output = output
            self.completion_time = int(time.time())
        changed, self.changed = self.changed, anyio.Event()
        changed.set()

    @property
    def done(self) -> bool:
        return self.state in (pb.TaskState.Succeed, pb.TaskState.Failed)

    def message(self) -> pb.Task:
        return pb.Task(
            metadata=pb.Metadata(id=str(self.id), name=str(self.id)),
            spec=pb.TaskSpec(session_id=str(self.session_id), input=self.input, output=self.output),
            status=pb.TaskStatus(
                state=self.state,
                creation_time=self.creation_time,
                completion_time=self.completion_time,
            ),
        )


class _Session:
    def __init__(self, session_id: int, spec: pb.SessionSpec) -> None:
        self.id = session_id
        self.spec = spec
        self.state = pb.SessionState.Open
        self.creation_time = int(time.time())
        self.completion_time: int | None = None
        self.tasks: dict[int, _Task] = {}

    def message(self) -> pb.Session:
        counts = dict.fromkeys(pb.TaskState, 0)
        for task in self.tasks.values():
            counts[task.state] += 1
        return pb.Session(
            metadata=pb.Metadata(id=str(self.id), name=str(self.id)),
            spec=self.spec,
            status=pb.SessionStatus(
                state=self.state,
                creation_time=self.creation_time,
                completion_time=self.completion_time,
                pending=counts[pb.TaskState.Pending],
                running=counts[pb.TaskState.Running],
                succeed=counts[pb.TaskState.Succeed],
                failed=counts[pb.TaskState.Failed],
            ),
        )


class V04Frontend(pb.FrontendBase):
    """The Frontend service, v0.4 style. Runs on the grpc loop."""

    def __init__(self) -> None:
        self.applications: dict[str, pb.Application] = {}
        self.sessions: dict[int, _Session] = {}
        self.active_watches = 0
        self.watches_opened = 0
        self.calls: list[str] = []
        self._group: anyio.abc.TaskGroup | None = None
        self._released: anyio.Event | None = None

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
        task.set(pb.TaskState.Running)
        if data == b"hang":
            await anyio.sleep_forever()
        if data in (b"hold", b"steps", b"cut-hold"):
            await self._released_wait()
        if data.startswith(b"fail:"):
            task.set(pb.TaskState.Failed, data[5:])
        else:
            task.set(pb.TaskState.Succeed, data)

    def _session(self, session_id: str) -> _Session:
        session = self.sessions.get(_parse_id(session_id, "session id"))
        if session is None:
            raise grpclib.GRPCError(Status.NOT_FOUND, f"session {session_id} not found")
        return session

    def _task(self, session_id: str, task_id: str) -> _Task:
        task = self._session(session_id).tasks.get(_parse_id(task_id, "task id"))
        if task is None:
            raise grpclib.GRPCError(Status.NOT_FOUND, f"task {task_id} not found")
        return task

    async def register_application(self, message: pb.RegisterApplicationRequest) -> pb.Result:
        self.calls.append("RegisterApplication")
        if message.application is None:
            return pb.Result(return_code=-1, message="application spec is missing")
        if message.name in self.applications:
            return pb.Result(return_code=-1, message=f"application {message.name} already exists")
        self.applications[message.name] = pb.Application(
            metadata=pb.Metadata(id=message.name, name=message.name),
            spec=message.application,
            status=pb.ApplicationStatus(
                state=pb.ApplicationState.Enabled, creation_time=int(time.time())
            ),
        )
        return pb.Result(return_code=0)

    async def list_application(self, message: pb.ListApplicationRequest) -> pb.ApplicationList:
        self.calls.append("ListApplication")
        return pb.ApplicationList(applications=list(self.applications.values()))

    async def create_session(self, message: pb.CreateSessionRequest) -> pb.Session:
        self.calls.append("CreateSession")
        if message.session is None:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, "session spec is missing")
        if message.session.application not in self.applications:
            raise _unknown()
        session = _Session(len(self.sessions) + 1, message.session)
        self.sessions[session.id] = session
        return session.message()

    async def get_session(self, message: pb.GetSessionRequest) -> pb.Session:
        self.calls.append("GetSession")
        return self._session(message.session_id).message()

    async def list_session(self, message: pb.ListSessionRequest) -> pb.SessionList:
        self.calls.append("ListSession")
        return pb.SessionList(sessions=[s.message() for s in self.sessions.values()])

    async def close_session(self, message: pb.CloseSessionRequest) -> pb.Session:
        self.calls.append("CloseSession")
        session = self._session(message.session_id)
        if session.state != pb.SessionState.Open or any(
            not task.done for task in session.tasks.values()
        ):
            raise _unknown()
        session.state = pb.SessionState.Closed
        session.completion_time = int(time.time())
        return session.message()

    async def delete_session(self, message: pb.DeleteSessionRequest) -> pb.Session:
        self.calls.append("DeleteSession")
        session = self._session(message.session_id)
        if session.state != pb.SessionState.Closed:
            raise _unknown()
        del self.sessions[session.id]
        return session.message()

    async def create_task(self, message: pb.CreateTaskRequest) -> pb.Task:
        self.calls.append("CreateTask")
        if message.task is None:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, "task spec is missing")
        session = self._session(message.task.session_id)
        if session.state != pb.SessionState.Open:
            raise _unknown()
        task = _Task(len(session.tasks) + 1, session.id, message.task.input)
        session.tasks[task.id] = task
        answer = task.message()
        assert self._group is not None
        self._group.start_soon(self._execute, task)
        return answer

    async def get_task(self, message: pb.GetTaskRequest) -> pb.Task:
        self.calls.append("GetTask")
        return self._task(message.session_id, message.task_id).message()

    async def watch_task(self, message: pb.WatchTaskRequest) -> AsyncIterator[pb.Task]:
        self.calls.append("WatchTask")
        task = self._task(message.session_id, message.task_id)
        if (task.input or b"").startswith(b"cut"):
            return  # ends the stream at once, as a restarting server would
        self.active_watches += 1
        self.watches_opened += 1
        try:
            if task.done:
                yield task.message()
                return
            sent = task.state  # v0.4 does not send the current state first
            while True:
                changed = task.changed
                if task.state != sent:
                    sent = task.state
                    yield task.message()
                    if task.done:
                        return
                else:
                    await changed.wait()
        finally:
            self.active_watches -= 1

    def release(self) -> None:
        """Let every ``b"hold"`` task finish (call it on the grpc loop)."""
        assert self._released is not None
        self._released.set()
        self._released = anyio.Event()


class V04Server:
    """A running :class:`V04Frontend`, with helpers that work from either backend."""

    def __init__(self, frontend: V04Frontend, loop: GrpcLoop, endpoint: str) -> None:
        self.frontend = frontend
        self.loop = loop
        self.endpoint = endpoint

    async def on_loop(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` on the server's loop, where its state lives."""

        async def call() -> Any:
            return fn()

        return await self.loop.run(call)

    async def release(self) -> None:
        """Let every held task finish."""
        await self.on_loop(self.frontend.release)

    async def active_watches(self) -> int:
        """How many WatchTask handlers are running now."""
        return int(await self.on_loop(lambda: self.frontend.active_watches))

    async def wait_for_watches(self, count: int) -> None:
        """Wait until exactly ``count`` WatchTask handlers run (a hang guard bounds it)."""
        with anyio.fail_after(20):
            # Polled: the count lives on the server's loop, maybe another thread.
            while await self.active_watches() != count:  # noqa: ASYNC110
                await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def serve_v04(*, port: int = 0) -> AsyncIterator[V04Server]:
    """Serve a :class:`V04Frontend` on 127.0.0.1 (0: a free port) for the ``async with``."""
    loop = open_grpc_loop()
    try:
        frontend = V04Frontend()
        async with (
            loop.background(frontend.run_executor),
            serve(loop, [frontend], port=port) as server,
        ):
            yield V04Server(frontend, loop, server.address)
    finally:
        await loop.aclose()
