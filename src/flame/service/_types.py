"""What a service's handlers receive and may return.

These mirror the messages of the Grpc shim contract, as plain frozen attrs
classes: a service never sees the wire types.
"""

from __future__ import annotations

import attrs

from .._proto.v04 import flame as pb
from .._types import Shim

__all__ = ["ApplicationContext", "SessionContext", "TaskContext", "TaskOutput"]


@attrs.frozen
class ApplicationContext:
    """The application a session runs: its registered name and how it is run."""

    name: str
    """The name the application was registered under."""
    shim: Shim = Shim.GRPC
    """The shim that runs it (``Shim.GRPC`` for a Python service)."""
    url: str | None = None
    command: str | None = None
    """The command the executor started, when the application has one."""

    @classmethod
    def _from_wire(cls, message: pb.ApplicationContext | None) -> ApplicationContext:
        if message is None:
            return cls(name="")
        return cls(
            name=message.name,
            shim=Shim(int(message.shim)),
            url=message.url,
            command=message.command,
        )


@attrs.frozen
class SessionContext:
    """The session the service is bound to, given to ``on_session_enter``."""

    session_id: str
    application: ApplicationContext
    common_data: bytes | None = None
    """The session's common data (set by the client that opened it), or None."""

    @classmethod
    def _from_wire(cls, message: pb.SessionContext) -> SessionContext:
        return cls(
            session_id=message.session_id,
            application=ApplicationContext._from_wire(message.application),
            common_data=message.common_data,
        )


@attrs.frozen
class TaskContext:
    """One task, given to ``on_task_invoke``."""

    task_id: str
    session_id: str
    input: bytes | None = None
    """The task's input as the client sent it, or None if it sent none."""

    @classmethod
    def _from_wire(cls, message: pb.TaskContext) -> TaskContext:
        return cls(task_id=message.task_id, session_id=message.session_id, input=message.input)


@attrs.frozen
class TaskOutput:
    """What a task gives back; ``on_task_invoke`` may also return bytes or None."""

    data: bytes | None = None
