"""The ``Frontend`` gRPC service of the embedded cluster.

Each handler takes the fields out of its request, asks the session manager,
and turns a refusal into a gRPC status a client can act on:

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

The message of the status is the refusal's message: it says what was wrong.
``RegisterApplication`` and ``UpdateApplication`` answer as a v0.4 cluster
does: a refused spec is a ``Result`` with ``return_code`` -1 and a message.

Every request is checked against the types of its wire before anything acts
on it (:mod:`flame._wire_check`; the three calls made once or more per task
are read by the hand-written codec of :mod:`flame._wire`, which refuses a
field of the wrong wire type itself): a request that decodes to the wrong
types is refused with INVALID_ARGUMENT naming the field.

Nothing is told to a client before it is committed: each handler, before it
answers (and a watch, before each message), waits until the store has
committed every change made so far (at once with memory storage). A client
that saw a task created, or finished, finds it so after a crash.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import betterproto2
from betterproto2.casing import snake_case

from .._errors import FlameError, FlameErrorCode
from .._proto.v04 import flame as pb
from .._transport import refuse, server_stream_handler, unary_handler
from .._wire import WireTask, decode_create_task, decode_get_task, decode_watch_task
from .._wire_check import checked
from ._sessions import SessionManager

__all__ = ["Frontend"]

log = logging.getLogger("flame.local.frontend")

R = TypeVar("R")

_FINAL = (pb.TaskState.Succeed, pb.TaskState.Failed)

#: The calls made once or more per task: read with the hand-written codec,
#: which gives the right types or refuses (the tests hold it to the
#: generated decoder and the check).
_FAST_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "/flame.Frontend/CreateTask": decode_create_task,
    "/flame.Frontend/GetTask": decode_get_task,
    "/flame.Frontend/WatchTask": decode_watch_task,
}

_STATUS = {
    FlameErrorCode.NOT_FOUND: "NOT_FOUND",
    FlameErrorCode.ALREADY_EXISTS: "ALREADY_EXISTS",
    FlameErrorCode.INVALID_ARGUMENT: "INVALID_ARGUMENT",
    FlameErrorCode.INVALID_STATE: "FAILED_PRECONDITION",
    FlameErrorCode.UNAVAILABLE: "UNAVAILABLE",
}


def _status(error: FlameError) -> Exception:
    return refuse(_STATUS.get(error.code, "INTERNAL"), error.message)


def _frozen(reply: R) -> R:
    """A copy of ``reply`` that nothing changes any more."""
    if isinstance(reply, pb.Task):
        status = reply.status
        if status is not None and status.state in _FINAL:
            return reply  # a finished task changes no more
        spec = reply.spec
        copy: Any = WireTask(
            metadata=reply.metadata,  # never changed after creation
            spec=None
            if spec is None
            else pb.TaskSpec(session_id=spec.session_id, input=spec.input, output=spec.output),
            status=None
            if status is None
            else pb.TaskStatus(
                state=status.state,
                creation_time=status.creation_time,
                completion_time=status.completion_time,
            ),
        )
        return typing.cast(R, copy)
    if isinstance(reply, betterproto2.Message):
        return type(reply).parse(bytes(reply))
    return reply


def _result(problem: str | None) -> pb.Result:
    if problem is None:
        return pb.Result(return_code=0)
    return pb.Result(return_code=-1, message=problem)


class Frontend(pb.FrontendBase):  # type: ignore[misc]
    """Serves every ``Frontend`` method from a :class:`SessionManager`."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        self._storage = manager.storage

    def __mapping__(self) -> dict[str, Any]:
        # Every method of the generated service, served by the method of the
        # same name here, its request read by a checked decoder.
        mapping: dict[str, Any] = {}
        for path, generated in super().__mapping__().items():
            method = getattr(self, snake_case(path.rsplit("/", 1)[1]))
            decode = _FAST_DECODERS.get(path) or checked(generated.request_type)
            handler = (
                server_stream_handler if generated.cardinality.server_streaming else unary_handler
            )
            mapping[path] = handler(method, decode, generated.reply_type)
        return mapping

    async def _committed(self, reply: R) -> R:
        """``reply`` as it is now, once every change made so far is committed.

        A copy while there is something to wait for: the objects the
        manager hands out go on changing (a task runs and finishes) while the
        commit is made, and a state newer than the commit must not be told.
        """
        storage = self._storage
        if storage.unwritten:
            reply = _frozen(reply)
            try:
                await storage.committed()
            except FlameError as error:
                raise _status(error) from None
        return reply

    async def register_application(self, message: pb.RegisterApplicationRequest) -> pb.Result:
        problem = self.manager.register_application(message.name, message.application)
        return await self._committed(_result(problem))

    async def unregister_application(self, message: pb.UnregisterApplicationRequest) -> pb.Result:
        try:
            self.manager.unregister_application(message.name)
        except FlameError as error:
            raise _status(error) from None
        return await self._committed(_result(None))

    async def update_application(self, message: pb.UpdateApplicationRequest) -> pb.Result:
        try:
            problem = self.manager.update_application(message.name, message.application)
        except FlameError as error:
            raise _status(error) from None
        return await self._committed(_result(problem))

    async def get_application(self, message: pb.GetApplicationRequest) -> pb.Application:
        try:
            return await self._committed(self.manager.get_application(message.name))
        except FlameError as error:
            raise _status(error) from None

    async def list_application(self, message: pb.ListApplicationRequest) -> pb.ApplicationList:
        return await self._committed(
            pb.ApplicationList(applications=self.manager.list_applications())
        )

    async def create_session(self, message: pb.CreateSessionRequest) -> pb.Session:
        try:
            return await self._committed(self.manager.create_session(message.session))
        except FlameError as error:
            raise _status(error) from None

    async def delete_session(self, message: pb.DeleteSessionRequest) -> pb.Session:
        try:
            return await self._committed(self.manager.delete_session(message.session_id))
        except FlameError as error:
            raise _status(error) from None

    async def open_session(self, message: pb.OpenSessionRequest) -> pb.Session:
        try:
            return await self._committed(self.manager.open_session(message.session_id))
        except FlameError as error:
            raise _status(error) from None

    async def close_session(self, message: pb.CloseSessionRequest) -> pb.Session:
        try:
            return await self._committed(self.manager.close_session(message.session_id))
        except FlameError as error:
            raise _status(error) from None

    async def get_session(self, message: pb.GetSessionRequest) -> pb.Session:
        try:
            return await self._committed(self.manager.get_session(message.session_id))
        except FlameError as error:
            raise _status(error) from None

    async def list_session(self, message: pb.ListSessionRequest) -> pb.SessionList:
        return await self._committed(pb.SessionList(sessions=self.manager.list_sessions()))

    async def create_task(self, message: pb.CreateTaskRequest) -> pb.Task:
        try:
            return await self._committed(self.manager.create_task(message.task))
        except FlameError as error:
            raise _status(error) from None

    async def delete_task(self, message: pb.DeleteTaskRequest) -> pb.Task:
        try:
            return await self._committed(
                self.manager.delete_task(message.task_id, message.session_id)
            )
        except FlameError as error:
            raise _status(error) from None

    async def get_task(self, message: pb.GetTaskRequest) -> pb.Task:
        try:
            return await self._committed(self.manager.get_task(message.task_id, message.session_id))
        except FlameError as error:
            raise _status(error) from None

    async def watch_task(self, message: pb.WatchTaskRequest) -> AsyncIterator[pb.Task]:
        updates = self.manager.watch_task(message.task_id, message.session_id)
        try:
            async for task in updates:
                yield await self._committed(task)
        except FlameError as error:
            raise _status(error) from None
        finally:
            await updates.aclose()  # type: ignore[attr-defined]
