"""What every wire's codec offers, and the refusals they word alike.

A :class:`Wire` turns each Frontend call of the client into a :class:`Call`
(the path, the request's bytes, how to read the reply into the neutral
types) and refuses, before anything is sent, what its wire cannot carry.
:meth:`Wire.refine` rewords the refusals of its clusters that a status alone
does not explain. The codecs hold no state: one per wire serves every
connection.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from datetime import datetime
from typing import Generic, SupportsBytes, TypeVar

import attrs

from .._errors import FlameError, FlameErrorCode
from .._types import (
    Application,
    ApplicationAttributes,
    Event,
    Executor,
    Node,
    ResourceRequirement,
    SessionAttributes,
    SessionState,
)
from .._wire import TaskFields

__all__ = ["Call", "ResultFields", "SessionFields", "Wire"]

T = TypeVar("T")

#: A ``Result`` message: its ``return_code`` and ``message``.
ResultFields = tuple[int, "str | None"]


@attrs.frozen
class Call(Generic[T]):
    """One Frontend call, ready to send: ``request`` to ``path``; ``decode`` reads the reply.

    For a server-streaming call, ``decode`` reads each message.
    """

    name: str
    """The method, as the cluster names it (``CreateSession``)."""
    path: str
    request: bytes
    decode: Callable[[bytes], T]


@attrs.frozen
class SessionFields:
    """A session as any wire reports it, in the neutral types (a Session, less its client)."""

    id: str
    application: str
    slots: int
    state: SessionState
    creation_time: datetime
    pending: int = 0
    running: int = 0
    succeed: int = 0
    failed: int = 0
    completion_time: datetime | None = None
    cancelled: int = 0
    min_instances: int = 0
    max_instances: int | None = None
    priority: int = 0
    resreq: ResourceRequirement | None = None
    events: tuple[Event, ...] = ()


class Wire(abc.ABC):
    """The codec of one Flame wire: requests out, neutral types in.

    Each method returns the :class:`Call` to make, or raises FlameError at
    once: ``UNIMPLEMENTED`` for a call or a field the wire lacks,
    ``INVALID_ARGUMENT`` for a value it has no meaning for. Both name the
    wire (:meth:`lacks`, :meth:`no_meaning`).
    """

    name: str
    """``"v0.4"``, ``"v0.5"`` or ``"v0.6"``."""
    frontend: str
    """The path prefix of the Frontend's methods (``/flame.Frontend/``, ``/flame.v1.Frontend/``)."""
    has_events: bool
    """Whether tasks and sessions carry events (v0.5 and v0.6)."""
    scale: int
    """How many of the wire's time units make a second: 1 (seconds) or 1000 (milliseconds)."""
    create_task_path: str
    get_task_path: str
    watch_task_path: str

    def __repr__(self) -> str:
        return f"<Flame {self.name} wire>"

    def call(self, method: str, request: SupportsBytes, decode: Callable[[bytes], T]) -> Call[T]:
        """The :class:`Call` of the Frontend's ``method`` with a generated ``request``."""
        return Call(method, self.frontend + method, bytes(request), decode)

    # -- wording shared by every wire ----------------------------------------

    def lacks(self, what: str, since: str = "v0.6") -> FlameError:
        """UNIMPLEMENTED: ``what`` (a call, a field) is not on this wire; ``since`` has it."""
        return FlameError(
            FlameErrorCode.UNIMPLEMENTED,
            f"{what}: the cluster speaks the Flame {self.name} wire, which has no such thing "
            f"(Flame {since} and later have it)",
        )

    def refuse_later_session_fields(self, attributes: SessionAttributes) -> None:
        """Raise ``lacks`` for a session field that only v0.6 and later carry, if one is set."""
        if attributes.min_instances:
            raise self.lacks("the session's min_instances")
        if attributes.max_instances is not None:
            raise self.lacks("the session's max_instances")
        if attributes.priority:
            raise self.lacks("the session's priority")
        if attributes.resreq is not None:
            raise self.lacks("the session's resreq")

    def no_meaning(self, what: str, advice: str) -> FlameError:
        """INVALID_ARGUMENT: ``what`` means nothing on this wire; ``advice`` says what to do."""
        return FlameError(
            FlameErrorCode.INVALID_ARGUMENT,
            f"{what} has no meaning on the Flame {self.name} wire, which the cluster speaks; "
            f"{advice}",
        )

    def refine(self, call: str, error: FlameError) -> FlameError:
        """``error``, which ``call`` failed with, reworded where this wire's clusters need it.

        Every wire: a call the cluster answered UNIMPLEMENTED says which wire
        it speaks.
        """
        if error.code is FlameErrorCode.UNIMPLEMENTED and self.name not in error.message:
            return FlameError(
                error.code, f"{error.message}; the cluster speaks the Flame {self.name} wire"
            )
        return error

    # -- applications ---------------------------------------------------------

    @abc.abstractmethod
    def register_application(
        self, name: str, attributes: ApplicationAttributes
    ) -> Call[ResultFields]: ...

    @abc.abstractmethod
    def unregister_application(self, name: str) -> Call[ResultFields]: ...

    @abc.abstractmethod
    def get_application(self, name: str) -> Call[Application]: ...

    @abc.abstractmethod
    def list_applications(self) -> Call[list[Application]]: ...

    # -- sessions ---------------------------------------------------------------

    @abc.abstractmethod
    def create_session(
        self, attributes: SessionAttributes, session_id: str | None
    ) -> Call[SessionFields]: ...

    @abc.abstractmethod
    def open_session(
        self, session_id: str, attributes: SessionAttributes | None
    ) -> Call[SessionFields]: ...

    @abc.abstractmethod
    def get_session(self, session_id: str) -> Call[SessionFields]: ...

    @abc.abstractmethod
    def close_session(self, session_id: str) -> Call[SessionFields]: ...

    @abc.abstractmethod
    def delete_session(self, session_id: str) -> Call[SessionFields]: ...

    @abc.abstractmethod
    def list_sessions(self) -> Call[list[SessionFields]]: ...

    # -- tasks and the cluster ---------------------------------------------------

    @abc.abstractmethod
    def list_tasks(self, session_id: str) -> Call[TaskFields]:
        """The ListTask stream of a session: ``decode`` reads each Task."""

    @abc.abstractmethod
    def list_executors(self) -> Call[list[Executor]]: ...

    @abc.abstractmethod
    def list_nodes(self) -> Call[list[Node]]: ...


def result_fields(message: object) -> ResultFields:
    """A generated ``Result`` of any wire as ``(return_code, message)``."""
    return (message.return_code, message.message)  # type: ignore[attr-defined]
