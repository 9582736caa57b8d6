"""The Flame v0.4 wire: package ``flame``, five shims, server-made ids, seconds.

Its Frontend lacks ListExecutor, ListNodes and ListTask, and a v0.4 session
manager leaves UnregisterApplication, UpdateApplication, GetApplication,
OpenSession and DeleteTask unimplemented (it answers UNIMPLEMENTED; the
embedded cluster implements them). Its refusals are UNKNOWN "unknown",
which the transport already words.
"""

from __future__ import annotations

from .._proto.v04 import flame as pb
from .._types import (
    _APPLICATION_STATES,
    _SESSION_STATES,
    _SHIMS,
    Application,
    ApplicationAttributes,
    Executor,
    Node,
    SessionAttributes,
    _enum,
    _optional_time,
    _time,
)
from .._wire import TaskFields
from ._base import Call, ResultFields, SessionFields, Wire, result_fields

__all__ = ["V04Wire", "application_from_pb", "session_from_pb"]

_FRONTEND = "/flame.Frontend/"


def application_from_pb(message: pb.Application) -> Application:
    """The neutral Application of a v0.4 ``Application``."""
    metadata = message.metadata or pb.Metadata()
    spec = message.spec or pb.ApplicationSpec()
    status = message.status or pb.ApplicationStatus()
    return Application(
        id=metadata.id,
        name=metadata.name,
        shim=_enum(_SHIMS, spec.shim, "shim"),
        state=_enum(_APPLICATION_STATES, status.state, "application state"),
        creation_time=_time(status.creation_time),
        url=spec.url,
        command=spec.command,
        arguments=list(spec.arguments),
        environments=list(spec.environments),
        working_directory=spec.working_directory,
    )


def session_from_pb(message: pb.Session) -> SessionFields:
    """The neutral fields of a v0.4 ``Session``."""
    metadata = message.metadata or pb.Metadata()
    spec = message.spec or pb.SessionSpec()
    status = message.status or pb.SessionStatus()
    return SessionFields(
        id=metadata.id,
        application=spec.application,
        slots=spec.slots,
        state=_enum(_SESSION_STATES, status.state, "session state"),
        creation_time=_time(status.creation_time),
        pending=status.pending,
        running=status.running,
        succeed=status.succeed,
        failed=status.failed,
        completion_time=_optional_time(status.completion_time),
    )


def _session(data: bytes) -> SessionFields:
    return session_from_pb(pb.Session.parse(data))


def _sessions(data: bytes) -> list[SessionFields]:
    return [session_from_pb(message) for message in pb.SessionList.parse(data).sessions]


def _result(data: bytes) -> ResultFields:
    return result_fields(pb.Result.parse(data))


def _application(data: bytes) -> Application:
    return application_from_pb(pb.Application.parse(data))


def _applications(data: bytes) -> list[Application]:
    return [application_from_pb(app) for app in pb.ApplicationList.parse(data).applications]


#: The application fields v0.5 and v0.6 brought, which v0.4 cannot carry.
_LATER_APPLICATION_FIELDS = (
    ("description", "v0.5"),
    ("labels", "v0.5"),
    ("image", "v0.5"),
    ("max_instances", "v0.5"),
    ("delay_release", "v0.5"),
    ("schema", "v0.5"),
    ("installer", "v0.6"),
)


class V04Wire(Wire):
    """The codec of Flame v0.4."""

    name = "v0.4"
    frontend = _FRONTEND
    has_events = False
    scale = 1
    create_task_path = _FRONTEND + "CreateTask"
    get_task_path = _FRONTEND + "GetTask"
    watch_task_path = _FRONTEND + "WatchTask"

    # -- applications ---------------------------------------------------------

    def register_application(
        self, name: str, attributes: ApplicationAttributes
    ) -> Call[ResultFields]:
        for field, since in _LATER_APPLICATION_FIELDS:
            value = getattr(attributes, field)
            if value is not None:
                raise self.lacks(f"the application's {field}", since)
        spec = pb.ApplicationSpec(
            shim=pb.Shim(int(attributes.shim)),
            url=attributes.url,
            command=attributes.command,
            arguments=list(attributes.arguments or ()),
            environments=list(attributes.environments or ()),
            working_directory=attributes.working_directory,
        )
        request = pb.RegisterApplicationRequest(name=name, application=spec)
        return self.call("RegisterApplication", request, _result)

    def unregister_application(self, name: str) -> Call[ResultFields]:
        request = pb.UnregisterApplicationRequest(name=name)
        return self.call("UnregisterApplication", request, _result)

    def get_application(self, name: str) -> Call[Application]:
        return self.call("GetApplication", pb.GetApplicationRequest(name=name), _application)

    def list_applications(self) -> Call[list[Application]]:
        return self.call("ListApplication", pb.ListApplicationRequest(), _applications)

    # -- sessions -----------------------------------------------------------------

    def create_session(
        self, attributes: SessionAttributes, session_id: str | None
    ) -> Call[SessionFields]:
        if session_id is not None:
            raise self.no_meaning(
                "a session id chosen by the client",
                "a v0.4 cluster makes the id; create the session without one",
            )
        self.refuse_later_session_fields(attributes)
        spec = pb.SessionSpec(
            application=attributes.application,
            slots=attributes.slots,
            common_data=attributes.common_data,
        )
        return self.call("CreateSession", pb.CreateSessionRequest(session=spec), _session)

    def open_session(
        self, session_id: str, attributes: SessionAttributes | None
    ) -> Call[SessionFields]:
        if attributes is not None:
            raise self.no_meaning(
                "open_session with session attributes",
                "a v0.4 cluster only opens a session that exists: give the id alone, "
                "or use create_session",
            )
        request = pb.OpenSessionRequest(session_id=session_id)
        return self.call("OpenSession", request, _session)

    def get_session(self, session_id: str) -> Call[SessionFields]:
        return self.call("GetSession", pb.GetSessionRequest(session_id=session_id), _session)

    def close_session(self, session_id: str) -> Call[SessionFields]:
        return self.call("CloseSession", pb.CloseSessionRequest(session_id=session_id), _session)

    def delete_session(self, session_id: str) -> Call[SessionFields]:
        request = pb.DeleteSessionRequest(session_id=session_id)
        return self.call("DeleteSession", request, _session)

    def list_sessions(self) -> Call[list[SessionFields]]:
        return self.call("ListSession", pb.ListSessionRequest(), _sessions)

    # -- what v0.4 has not -------------------------------------------------------

    def list_tasks(self, session_id: str) -> Call[TaskFields]:
        raise self.lacks("ListTask")

    def list_executors(self) -> Call[list[Executor]]:
        raise self.lacks("ListExecutor (in the Frontend)", "v0.5")

    def list_nodes(self) -> Call[list[Node]]:
        raise self.lacks("ListNodes")
