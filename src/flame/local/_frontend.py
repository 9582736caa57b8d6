"""The ``Frontend`` gRPC service of the embedded cluster.

Each handler takes the fields out of its request, asks the session manager,
and turns a refusal into a gRPC status a client can act on:

============================  =====================
refusal (FlameError code)     gRPC status
============================  =====================
NOT_FOUND                     NOT_FOUND
INVALID_ARGUMENT              INVALID_ARGUMENT
INVALID_STATE                 FAILED_PRECONDITION
UNAVAILABLE                   UNAVAILABLE (the cluster is stopping)
anything else                 INTERNAL
============================  =====================

The message of the status is the refusal's message: it says what was wrong.
``RegisterApplication`` and ``UpdateApplication`` answer as a v0.4 cluster
does: a refused spec is a ``Result`` with ``return_code`` -1 and a message.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from .._errors import FlameError, FlameErrorCode
from .._proto.v04 import flame as pb
from .._transport import refuse, server_stream_handler, unary_handler
from .._wire import decode_create_task, decode_get_task, decode_watch_task
from ._sessions import SessionManager

__all__ = ["Frontend"]

log = logging.getLogger("flame.local.frontend")

_STATUS = {
    FlameErrorCode.NOT_FOUND: "NOT_FOUND",
    FlameErrorCode.INVALID_ARGUMENT: "INVALID_ARGUMENT",
    FlameErrorCode.INVALID_STATE: "FAILED_PRECONDITION",
    FlameErrorCode.UNAVAILABLE: "UNAVAILABLE",
}


def _status(error: FlameError) -> Exception:
    return refuse(_STATUS.get(error.code, "INTERNAL"), error.message)


def _result(problem: str | None) -> pb.Result:
    if problem is None:
        return pb.Result(return_code=0)
    return pb.Result(return_code=-1, message=problem)


class Frontend(pb.FrontendBase):  # type: ignore[misc]
    """Serves every ``Frontend`` method from a :class:`SessionManager`."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

    def __mapping__(self) -> dict[str, Any]:
        mapping: dict[str, Any] = super().__mapping__()
        # The calls made once or more per task read their requests with the
        # hand-written codec (the replies, WireTasks, encode themselves so).
        mapping["/flame.Frontend/CreateTask"] = unary_handler(
            self.create_task, decode_create_task, pb.Task
        )
        mapping["/flame.Frontend/GetTask"] = unary_handler(self.get_task, decode_get_task, pb.Task)
        mapping["/flame.Frontend/WatchTask"] = server_stream_handler(
            self.watch_task, decode_watch_task, pb.Task
        )
        return mapping

    async def register_application(self, message: pb.RegisterApplicationRequest) -> pb.Result:
        return _result(self.manager.register_application(message.name, message.application))

    async def unregister_application(self, message: pb.UnregisterApplicationRequest) -> pb.Result:
        try:
            self.manager.unregister_application(message.name)
        except FlameError as error:
            raise _status(error) from None
        return _result(None)

    async def update_application(self, message: pb.UpdateApplicationRequest) -> pb.Result:
        try:
            return _result(self.manager.update_application(message.name, message.application))
        except FlameError as error:
            raise _status(error) from None

    async def get_application(self, message: pb.GetApplicationRequest) -> pb.Application:
        try:
            return self.manager.get_application(message.name)
        except FlameError as error:
            raise _status(error) from None

    async def list_application(self, message: pb.ListApplicationRequest) -> pb.ApplicationList:
        return pb.ApplicationList(applications=self.manager.list_applications())

    async def create_session(self, message: pb.CreateSessionRequest) -> pb.Session:
        try:
            return self.manager.create_session(message.session)
        except FlameError as error:
            raise _status(error) from None

    async def delete_session(self, message: pb.DeleteSessionRequest) -> pb.Session:
        try:
            return self.manager.delete_session(message.session_id)
        except FlameError as error:
            raise _status(error) from None

    async def open_session(self, message: pb.OpenSessionRequest) -> pb.Session:
        try:
            return self.manager.open_session(message.session_id)
        except FlameError as error:
            raise _status(error) from None

    async def close_session(self, message: pb.CloseSessionRequest) -> pb.Session:
        try:
            return self.manager.close_session(message.session_id)
        except FlameError as error:
            raise _status(error) from None

    async def get_session(self, message: pb.GetSessionRequest) -> pb.Session:
        try:
            return self.manager.get_session(message.session_id)
        except FlameError as error:
            raise _status(error) from None

    async def list_session(self, message: pb.ListSessionRequest) -> pb.SessionList:
        return pb.SessionList(sessions=self.manager.list_sessions())

    async def create_task(self, message: pb.CreateTaskRequest) -> pb.Task:
        try:
            return self.manager.create_task(message.task)
        except FlameError as error:
            raise _status(error) from None

    async def delete_task(self, message: pb.DeleteTaskRequest) -> pb.Task:
        try:
            return self.manager.delete_task(message.task_id, message.session_id)
        except FlameError as error:
            raise _status(error) from None

    async def get_task(self, message: pb.GetTaskRequest) -> pb.Task:
        try:
            return self.manager.get_task(message.task_id, message.session_id)
        except FlameError as error:
            raise _status(error) from None

    async def watch_task(self, message: pb.WatchTaskRequest) -> AsyncIterator[pb.Task]:
        updates = self.manager.watch_task(message.task_id, message.session_id)
        try:
            async for task in updates:
                yield task
        except FlameError as error:
            raise _status(error) from None
        finally:
            await updates.aclose()  # type: ignore[attr-defined]
