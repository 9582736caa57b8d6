"""The Flame v0.6 wire: package ``flame.v1``, client-chosen session ids, milliseconds.

What the codec owns:

* paths ``/flame.v1.Frontend/<Method>`` and the generated ``flame.v1`` classes;
* two shims, Host and Wasm: :attr:`Shim.GRPC` (``Shim.HOST``) is sent as
  Host and Host read back as it; Log, Stdio and Shell are refused;
* sessions: the client chooses the id, made here as the official client
  does (``<application>-<6 letters or digits>``) when none is given; no
  ``slots`` (only the neutral 1 passes), but ``min_instances``,
  ``max_instances``, ``priority`` and ``resreq``; ``batch_size`` is sent
  as 1, which later servers force anyway;
* applications: environments as ``{name, value}`` pairs, and the fields
  v0.5 brought plus ``url`` and ``installer``;
* every time in milliseconds;
* refusals: a v0.6 cluster on sqlite refuses a task on a closed or unknown
  session, a duplicate session id, an unknown application, and closing a
  session with a running task with INTERNAL; those calls' INTERNAL is
  reworded as the state error it is.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from .._errors import FlameError, FlameErrorCode
from .._types import (
    _APPLICATION_STATES,
    _EXECUTOR_STATES,
    _NODE_STATES,
    _SESSION_STATES,
    Application,
    ApplicationAttributes,
    ApplicationSchema,
    Executor,
    Node,
    ResourceRequirement,
    SessionAttributes,
    Shim,
    _enum,
    _events,
    _optional_time,
    _time,
)
from .._wire import TaskFields, decode_task
from ._base import Call, ResultFields, SessionFields, Wire, result_fields

__all__ = ["V06Wire", "new_session_id"]

_ID_CHARACTERS = string.ascii_letters + string.digits


def new_session_id(application: str) -> str:
    """A fresh session id in the official client's shape: ``<application>-<6 of [A-Za-z0-9]>``."""
    return application + "-" + "".join(secrets.choice(_ID_CHARACTERS) for _ in range(6))


#: The calls whose INTERNAL a v0.6 cluster (sqlite storage) answers for a
#: refusal of the caller's request, and what it means there.
_INTERNAL_REFUSALS = {
    "CreateTask": "the session is closed, or does not exist",
    "CreateSession": ("a session with this id exists, or the application is unknown or disabled"),
    "CloseSession": "a task of the session is running",
    "DeleteSession": "the session is open, or has tasks not finished (cancelled ones count)",
}


class V06Wire(Wire):
    """The codec of Flame v0.6 (and, through :class:`~.v05.V05Wire`, the base of v0.5's)."""

    name = "v0.6"
    frontend = "/flame.v1.Frontend/"
    has_events = True
    scale = 1000
    create_task_path = frontend + "CreateTask"
    get_task_path = frontend + "GetTask"
    watch_task_path = frontend + "WatchTask"

    #: The wire's generated module; set when the codec is made.
    pb: Any

    def __init__(self) -> None:
        from .._proto.v06.flame import v1

        self.pb = v1

    # -- reading replies ----------------------------------------------------------

    def _resreq(self, message: Any) -> ResourceRequirement | None:
        if message is None:
            return None
        return ResourceRequirement(
            cpu=message.cpu, memory=message.memory, gpu=max(getattr(message, "gpu", 0), 0)
        )

    def _shim(self, value: int) -> Shim:
        if value == 0:
            return Shim.HOST
        if value == 1:
            return Shim.WASM
        raise FlameError(
            FlameErrorCode.INTERNAL,
            f"the cluster sent shim {value}, which the {self.name} wire does not have; "
            "upgrade flame-sdk",
        )

    def _application(self, message: Any) -> Application:
        pb = self.pb
        metadata = message.metadata or pb.Metadata()
        spec = message.spec or pb.ApplicationSpec()
        status = message.status or pb.ApplicationStatus()
        schema = spec.schema
        return Application(
            id=metadata.id,
            name=metadata.name,
            shim=self._shim(int(spec.shim)),
            state=_enum(_APPLICATION_STATES, status.state, "application state"),
            creation_time=_time(status.creation_time, self.scale),
            url=getattr(spec, "url", None),
            command=spec.command,
            arguments=list(spec.arguments),
            environments=[f"{pair.name}={pair.value}" for pair in spec.environments],
            working_directory=spec.working_directory,
            description=spec.description,
            labels=list(spec.labels),
            image=spec.image,
            max_instances=spec.max_instances,
            delay_release=spec.delay_release,
            schema=None
            if schema is None
            else ApplicationSchema(
                input=schema.input, output=schema.output, common_data=schema.common_data
            ),
            installer=getattr(spec, "installer", None),
        )

    def _session(self, message: Any) -> SessionFields:
        pb = self.pb
        metadata = message.metadata or pb.Metadata()
        spec = message.spec or pb.SessionSpec()
        status = message.status or pb.SessionStatus()
        scale = self.scale
        return SessionFields(
            id=metadata.id,
            application=spec.application,
            slots=getattr(spec, "slots", 1),
            state=_enum(_SESSION_STATES, status.state, "session state"),
            creation_time=_time(status.creation_time, scale),
            pending=status.pending,
            running=status.running,
            succeed=status.succeed,
            failed=status.failed,
            completion_time=_optional_time(status.completion_time, scale),
            cancelled=getattr(status, "cancelled", 0),
            min_instances=getattr(spec, "min_instances", 0),
            max_instances=getattr(spec, "max_instances", None),
            priority=getattr(spec, "priority", 0),
            resreq=self._resreq(getattr(spec, "resreq", None)),
            events=_events(status.events, scale),
        )

    def _executor(self, message: Any) -> Executor:
        pb = self.pb
        metadata = message.metadata or pb.Metadata()
        spec = message.spec or pb.ExecutorSpec()
        status = message.status or pb.ExecutorStatus()
        shim = getattr(spec, "shim", None)
        return Executor(
            id=metadata.id,
            node=spec.node,
            state=_enum(_EXECUTOR_STATES, status.state, "executor state"),
            session_id=status.session_id,
            resreq=self._resreq(spec.resreq),
            shim=None if shim is None else self._shim(int(shim)),
            slots=getattr(spec, "slots", None),
        )

    def _node(self, message: Any) -> Node:
        pb = self.pb
        metadata = message.metadata or pb.Metadata()
        spec = message.spec or pb.NodeSpec()
        status = message.status or pb.NodeStatus()
        info = status.info or pb.NodeInfo()
        heartbeat = status.last_heartbeat_time
        return Node(
            name=metadata.name or metadata.id,
            state=_enum(_NODE_STATES, status.state, "node state"),
            hostname=spec.hostname,
            capacity=self._resreq(status.capacity),
            allocatable=self._resreq(status.allocatable),
            arch=info.arch,
            os=info.os,
            addresses=tuple((a.type, a.address) for a in status.addresses),
            # The proto says seconds; the server sends 0, which means none.
            last_heartbeat_time=_time(heartbeat) if heartbeat else None,
        )

    def _read_result(self, data: bytes) -> ResultFields:
        return result_fields(self.pb.Result.parse(data))

    def _read_application(self, data: bytes) -> Application:
        return self._application(self.pb.Application.parse(data))

    def _read_applications(self, data: bytes) -> list[Application]:
        return [self._application(m) for m in self.pb.ApplicationList.parse(data).applications]

    def _read_session(self, data: bytes) -> SessionFields:
        return self._session(self.pb.Session.parse(data))

    def _read_sessions(self, data: bytes) -> list[SessionFields]:
        return [self._session(m) for m in self.pb.SessionList.parse(data).sessions]

    def _read_executors(self, data: bytes) -> list[Executor]:
        return [self._executor(m) for m in self.pb.ExecutorList.parse(data).executors]

    def _read_nodes(self, data: bytes) -> list[Node]:
        return [self._node(m) for m in self.pb.NodeList.parse(data).nodes]

    # -- building requests --------------------------------------------------------

    def _shim_number(self, shim: Shim) -> int:
        if shim is Shim.HOST:
            return 0
        if shim is Shim.WASM:
            return 1
        raise self.no_meaning(
            f"Shim.{shim.name}",
            f"its clusters run Shim.HOST (Shim.GRPC: a service started with the "
            f"application's command) and Shim.WASM; Shim.{shim.name} is v0.4's",
        )

    def _application_spec(self, attributes: ApplicationAttributes) -> Any:
        pb = self.pb
        pairs = []
        for item in attributes.environments or ():
            name, _, value = item.partition("=")
            pairs.append(pb.Environment(name=name, value=value))
        schema = attributes.schema
        fields: dict[str, Any] = {
            "shim": pb.Shim(self._shim_number(attributes.shim)),
            "description": attributes.description,
            "labels": list(attributes.labels or ()),
            "image": attributes.image,
            "command": attributes.command,
            "arguments": list(attributes.arguments or ()),
            "environments": pairs,
            "working_directory": attributes.working_directory,
            "max_instances": attributes.max_instances,
            "delay_release": attributes.delay_release,
            "schema": None
            if schema is None
            else pb.ApplicationSchema(
                input=schema.input, output=schema.output, common_data=schema.common_data
            ),
        }
        fields.update(self._later_application_fields(attributes))
        return pb.ApplicationSpec(**fields)

    def _later_application_fields(self, attributes: ApplicationAttributes) -> dict[str, Any]:
        """The application fields of v0.6 that v0.5 has not."""
        return {"url": attributes.url, "installer": attributes.installer}

    def _session_spec(self, attributes: SessionAttributes) -> Any:
        if attributes.slots != 1:
            raise self.no_meaning(
                f"slots={attributes.slots}",
                "its clusters size a session's executors by resreq (and bound their number "
                "with min_instances and max_instances); leave slots at 1",
            )
        pb = self.pb
        resreq = attributes.resreq
        return pb.SessionSpec(
            application=attributes.application,
            common_data=attributes.common_data,
            min_instances=attributes.min_instances,
            max_instances=attributes.max_instances,
            batch_size=1,
            priority=attributes.priority,
            resreq=None
            if resreq is None
            else pb.ResourceRequirement(cpu=resreq.cpu, memory=resreq.memory, gpu=resreq.gpu),
        )

    # -- applications ---------------------------------------------------------------

    def register_application(
        self, name: str, attributes: ApplicationAttributes
    ) -> Call[ResultFields]:
        request = self.pb.RegisterApplicationRequest(
            name=name, application=self._application_spec(attributes)
        )
        return self.call("RegisterApplication", request, self._read_result)

    def unregister_application(self, name: str) -> Call[ResultFields]:
        request = self.pb.UnregisterApplicationRequest(name=name)
        return self.call("UnregisterApplication", request, self._read_result)

    def get_application(self, name: str) -> Call[Application]:
        request = self.pb.GetApplicationRequest(name=name)
        return self.call("GetApplication", request, self._read_application)

    def list_applications(self) -> Call[list[Application]]:
        request = self.pb.ListApplicationRequest()
        return self.call("ListApplication", request, self._read_applications)

    # -- sessions -------------------------------------------------------------------

    def create_session(
        self, attributes: SessionAttributes, session_id: str | None
    ) -> Call[SessionFields]:
        spec = self._session_spec(attributes)
        chosen = new_session_id(attributes.application) if session_id is None else session_id
        request = self.pb.CreateSessionRequest(session_id=chosen, session=spec)
        return self.call("CreateSession", request, self._read_session)

    def open_session(
        self, session_id: str, attributes: SessionAttributes | None
    ) -> Call[SessionFields]:
        spec = None if attributes is None else self._session_spec(attributes)
        request = self.pb.OpenSessionRequest(session_id=session_id, session=spec)
        return self.call("OpenSession", request, self._read_session)

    def get_session(self, session_id: str) -> Call[SessionFields]:
        request = self.pb.GetSessionRequest(session_id=session_id)
        return self.call("GetSession", request, self._read_session)

    def close_session(self, session_id: str) -> Call[SessionFields]:
        request = self.pb.CloseSessionRequest(session_id=session_id)
        return self.call("CloseSession", request, self._read_session)

    def delete_session(self, session_id: str) -> Call[SessionFields]:
        request = self.pb.DeleteSessionRequest(session_id=session_id)
        return self.call("DeleteSession", request, self._read_session)

    def list_sessions(self) -> Call[list[SessionFields]]:
        return self.call("ListSession", self.pb.ListSessionRequest(), self._read_sessions)

    # -- tasks and the cluster --------------------------------------------------------

    def list_tasks(self, session_id: str) -> Call[TaskFields]:
        return self.call("ListTask", self.pb.ListTaskRequest(session_id=session_id), decode_task)

    def list_executors(self) -> Call[list[Executor]]:
        return self.call("ListExecutor", self.pb.ListExecutorRequest(), self._read_executors)

    def list_nodes(self) -> Call[list[Node]]:
        return self.call("ListNodes", self.pb.ListNodesRequest(), self._read_nodes)

    # -- refusals ---------------------------------------------------------------------

    def refine(self, call: str, error: FlameError) -> FlameError:
        meaning = _INTERNAL_REFUSALS.get(call)
        if meaning is not None and error.code is FlameErrorCode.INTERNAL:
            # sqlite's text tells a session id in use from the other refusals.
            taken = call == "CreateSession" and "unique constraint" in error.message.lower()
            return FlameError(
                FlameErrorCode.ALREADY_EXISTS if taken else FlameErrorCode.INVALID_STATE,
                f"{error.message} (a v0.6 cluster refuses {call} so when {meaning})",
            )
        return super().refine(call, error)
