"""The Flame v0.5 wire: v0.6's messages, less some, in package ``flame``, in seconds.

What differs from v0.6 (:mod:`.v06`), and so what this codec changes:

* paths ``/flame.Frontend/<Method>`` and the generated ``flame`` classes of v0.5;
* the cluster makes session ids (CreateSessionRequest has only the spec):
  an id chosen by the client is refused;
* sessions have ``slots`` and none of v0.6's ``min_instances``,
  ``max_instances``, ``priority``, ``resreq`` (refused when set);
  applications have no ``url`` (a seed field: refused as meaningless) and no
  ``installer``; there is no Cancelled state, no ListTask, no ListNodes;
* every time in seconds;
* refusals: every error but "not found" and "internal" is UNKNOWN with the
  error's text (an unknown application, a closed session, ...), which the
  transport takes for the server's failure (INTERNAL): here it is the state
  error it is. OpenSession and DeleteTask are ``todo!()`` in v0.5.0: the
  handler panics and the client sees the call's stream reset, which is
  reworded as UNIMPLEMENTED.
"""

from __future__ import annotations

from typing import Any

from .._errors import FlameError, FlameErrorCode
from .._types import ApplicationAttributes, Node, SessionAttributes
from .._wire import TaskFields
from ._base import Call, SessionFields, Wire
from .v06 import V06Wire

__all__ = ["V05Wire"]

#: Where a reset stream shows in a FlameError's message (the transport's words).
_RESET = "reset the call"
#: Where an UNKNOWN status shows in a FlameError's message (the transport's words).
_UNKNOWN = ": UNKNOWN: "
#: The calls v0.5.0 panics in.
_PANICKING = ("OpenSession", "DeleteTask")


class V05Wire(V06Wire):
    """The codec of Flame v0.5."""

    name = "v0.5"
    frontend = "/flame.Frontend/"
    scale = 1
    create_task_path = frontend + "CreateTask"
    get_task_path = frontend + "GetTask"
    watch_task_path = frontend + "WatchTask"

    def __init__(self) -> None:
        from .._proto.v05 import flame

        self.pb = flame

    def _later_application_fields(self, attributes: ApplicationAttributes) -> dict[str, Any]:
        if attributes.url is not None:
            raise self.no_meaning(
                "the application's url", "v0.5 applications have none; leave it unset"
            )
        if attributes.installer is not None:
            raise self.lacks("the application's installer")
        return {}

    def _session_spec(self, attributes: SessionAttributes) -> Any:
        self.refuse_later_session_fields(attributes)
        return self.pb.SessionSpec(
            application=attributes.application,
            slots=attributes.slots,
            common_data=attributes.common_data,
        )

    def create_session(
        self, attributes: SessionAttributes, session_id: str | None
    ) -> Call[SessionFields]:
        if session_id is not None:
            raise self.no_meaning(
                "a session id chosen by the client",
                "a v0.5 cluster makes the id; create the session without one",
            )
        request = self.pb.CreateSessionRequest(session=self._session_spec(attributes))
        return self.call("CreateSession", request, self._read_session)

    def open_session(
        self, session_id: str, attributes: SessionAttributes | None
    ) -> Call[SessionFields]:
        if attributes is not None:
            raise self.no_meaning(
                "open_session with session attributes",
                "a v0.5 cluster only opens a session that exists: give the id alone, "
                "or use create_session",
            )
        request = self.pb.OpenSessionRequest(session_id=session_id)
        return self.call("OpenSession", request, self._read_session)

    def list_tasks(self, session_id: str) -> Call[TaskFields]:
        raise self.lacks("ListTask")

    def list_nodes(self) -> Call[list[Node]]:
        raise self.lacks("ListNodes")

    def refine(self, call: str, error: FlameError) -> FlameError:
        message = error.message
        if call in _PANICKING and _RESET in message:
            return FlameError(
                FlameErrorCode.UNIMPLEMENTED,
                f"{message}: a Flame v0.5 cluster does not implement {call} (its handler "
                "fails before answering); the cluster speaks the Flame v0.5 wire",
            )
        if error.code is FlameErrorCode.INTERNAL and _UNKNOWN in message:
            return FlameError(
                FlameErrorCode.INVALID_STATE,
                f"{message} (a v0.5 cluster refuses so when the object's state, or a missing "
                "application or session, forbids the call)",
            )
        return Wire.refine(self, call, error)
