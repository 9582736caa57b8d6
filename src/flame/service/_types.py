"""What a service's handlers receive and may return.

Plain frozen attrs classes, the same whichever contract the executor speaks
(:mod:`._contracts`): each field is there when the executor sends it, and
None when its contract has no such thing. A service never sees wire types.
"""

from __future__ import annotations

import attrs

from .._types import Shim

__all__ = ["ApplicationContext", "SessionContext", "TaskContext", "TaskOutput"]


@attrs.frozen
class ApplicationContext:
    """The application a session runs: its registered name and how it is run.

    Which fields an executor sends depends on its Flame version: ``url`` and
    ``command`` on v0.4; ``image``, ``command`` and ``working_directory`` on
    v0.5; and ``url`` and ``installer`` too on v0.6.
    """

    name: str
    """The name the application was registered under."""
    shim: Shim = Shim.GRPC
    """The shim that runs it: ``Shim.GRPC`` for a service (v0.6's Host shim)."""
    url: str | None = None
    """Where the application's package comes from, when it has one."""
    command: str | None = None
    """The command the executor started, when the application has one."""
    image: str | None = None
    """The application's image, when it has one (v0.5 and later)."""
    working_directory: str | None = None
    """The directory the service was started in, when the application sets it (v0.5 and later)."""
    installer: str | None = None
    """How the executor installed the application (``python``, ``binary``), on v0.6."""


@attrs.frozen
class SessionContext:
    """The session the service is bound to, given to ``on_session_enter``."""

    session_id: str
    application: ApplicationContext
    common_data: bytes | None = None
    """The session's common data (set by the client that opened it), or None."""
    endpoint: str | None = None
    """The cluster's address, for a service that calls back into Flame, or None.

    A v0.6 executor gives it (``FLAME_ENDPOINT``); connect with
    ``flame.connect(ctx.endpoint, ca_file=ctx.ca_file)``.
    """
    ca_file: str | None = None
    """The CA file for TLS to the cluster (``FLAME_CA_FILE``), or None."""


@attrs.frozen
class TaskContext:
    """One task, given to ``on_task_invoke``."""

    task_id: str
    session_id: str
    input: bytes | None = None
    """The task's input as the client sent it, or None if it sent none."""


@attrs.frozen
class TaskOutput:
    """What a task gives back; ``on_task_invoke`` may also return bytes or None."""

    data: bytes | None = None
