"""The SDK's data types: ids, states, the attrs classes a caller sees, constants.

Every object here is plain Python: no generated message ever reaches a caller.
The private ``*_from_pb`` / ``*_to_pb`` functions at the bottom are the one
place where messages and these types meet, so that each message is converted
once, right where it arrives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import FlameError, FlameErrorCode, NamedIntEnum
from ._proto.v04 import flame as pb

if TYPE_CHECKING:
    from ._wire import TaskFields

__all__ = [
    "DEFAULT_CONTEXT_NAME",
    "DEFAULT_FLAME_CONF",
    "DEFAULT_FLAME_ENDPOINT",
    "Application",
    "ApplicationAttributes",
    "ApplicationID",
    "ApplicationState",
    "CommonData",
    "Message",
    "SessionAttributes",
    "SessionID",
    "SessionState",
    "Shim",
    "Task",
    "TaskID",
    "TaskInput",
    "TaskOutput",
    "TaskState",
]

# --------------------------------------------------------------------------
# Aliases and constants

TaskID = str
"""A task's id: a decimal integer, counted from 1 within its session, as a string."""
SessionID = str
"""A session's id: a decimal integer, counted from 1 across the cluster, as a string."""
ApplicationID = str
"""An application's id, as the cluster reports it."""
Message = bytes
"""Opaque bytes carried for the application: Flame never looks inside."""
TaskInput = Message
"""What a task is given (for the Shell shim: the command line to run)."""
TaskOutput = Message
"""What a finished task produced (for the Shell shim: its stdout)."""
CommonData = Message
"""Bytes shared by every task of a session, given when the session is created."""

DEFAULT_FLAME_CONF = "flame-conf.yaml"
"""The configuration file's name, looked up in ``~/.flame/``."""
DEFAULT_CONTEXT_NAME = "flame"
"""The name of the context whose ``endpoint`` :func:`flame.connect` uses."""
DEFAULT_FLAME_ENDPOINT = "http://127.0.0.1:8080"
"""Where :func:`flame.connect` goes when nothing else names an endpoint."""


# --------------------------------------------------------------------------
# Enums (the values are the wire's)


class SessionState(NamedIntEnum):
    """Whether a session accepts tasks."""

    OPEN = 0
    """The session accepts new tasks."""
    CLOSED = 1
    """The session was closed; it accepts no task."""


class TaskState(NamedIntEnum):
    """Where a task is in its life: PENDING, RUNNING, then SUCCEED or FAILED."""

    PENDING = 0
    """Waiting for an executor."""
    RUNNING = 1
    """An executor is running it."""
    SUCCEED = 2
    """It finished; ``output`` holds what it produced."""
    FAILED = 3
    """It failed; ``output`` usually holds the error's text."""


class ApplicationState(NamedIntEnum):
    """Whether an application can be used by new sessions."""

    ENABLED = 0
    """Sessions may be created for it."""
    DISABLED = 1
    """It is registered but not usable."""


class Shim(NamedIntEnum):
    """How an executor runs an application's tasks."""

    LOG = 0
    """Logs each task; the task succeeds with no output."""
    STDIO = 1
    """Runs ``command`` per task, input on stdin, output from stdout."""
    WASM = 2
    """Calls ``command`` as a WebAssembly component."""
    SHELL = 3
    """Runs the task's input as a command line; output from stdout."""
    GRPC = 4
    """Starts ``command`` as a long-running gRPC service and calls it per task."""


_COMPLETED = frozenset((TaskState.SUCCEED, TaskState.FAILED))

# Lookup tables: a tuple index is the cheapest int -> enum conversion, and
# this runs for every message of every task.
_TASK_STATES = tuple(TaskState)
_SESSION_STATES = tuple(SessionState)
_APPLICATION_STATES = tuple(ApplicationState)
_SHIMS = tuple(Shim)


# --------------------------------------------------------------------------
# Local checks: refuse what can be refused without asking the cluster.


def _invalid(message: str) -> FlameError:
    return FlameError(FlameErrorCode.INVALID_ARGUMENT, message)


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"{what} must be a non-empty string, not {value!r}")
    return value


def _check_id(value: object, what: str) -> str:
    """An id as a string; an int is accepted and written in decimal."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"{what} must be a non-empty string such as '1', not {value!r}")
    return value


def _check_bytes(value: object, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    hint = "; encode it first, e.g. text.encode()" if isinstance(value, str) else ""
    raise _invalid(f"{what} must be bytes, not {type(value).__name__}{hint}")


def _check_optional_bytes(value: object, what: str) -> bytes | None:
    return None if value is None else _check_bytes(value, what)


def _check_optional_str(value: object, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _invalid(f"{what} must be a string or None, not {type(value).__name__}")


def _check_strings(value: object, what: str) -> list[str] | None:
    if value is None:
        return None
    # A lone string is a sequence of characters: refuse it rather than split it.
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise _invalid(f"{what} must be a list of strings, not {type(value).__name__}")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise _invalid(f"{what} must hold only strings, not {item!r}")
    return items


def _check_environments(value: object) -> list[str] | None:
    if isinstance(value, Mapping):
        pairs = []
        for key, item in value.items():
            if not isinstance(key, str) or not isinstance(item, str) or not key:
                raise _invalid(f"environments must map names to strings, not {key!r}: {item!r}")
            pairs.append(f"{key}={item}")
        return pairs
    items = _check_strings(value, "environments")
    for item in items or ():
        if "=" not in item or item.startswith("="):
            raise _invalid(f"environments entries are 'NAME=VALUE' strings, not {item!r}")
    return items


class _NoShim:
    """The default of ``ApplicationAttributes.shim``: none was given, which is refused."""

    def __repr__(self) -> str:
        return "<no shim>"


_NO_SHIM: Any = _NoShim()


def _check_shim(value: Shim | int | str) -> Shim:
    if isinstance(value, Shim):
        return value
    names = ", ".join(f"Shim.{shim.name}" for shim in Shim)
    if value is _NO_SHIM:
        # No default: an application registered without saying how to run it
        # would silently be a Log one, whose tasks succeed doing nothing.
        raise _invalid(f"the application has no shim; give one of {names}")
    if isinstance(value, str):
        member = Shim.__members__.get(value.strip().upper())
        if member is not None:
            return member
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(_SHIMS):
        return _SHIMS[value]
    raise _invalid(f"shim must be one of {names}, not {value!r}")


def _application_name(value: object) -> str:
    return _check_name(value, "application")


def _common_data(value: object) -> bytes | None:
    return _check_optional_bytes(value, "common_data")


def _url(value: object) -> str | None:
    return _check_optional_str(value, "url")


def _command(value: object) -> str | None:
    return _check_optional_str(value, "command")


def _working_directory(value: object) -> str | None:
    return _check_optional_str(value, "working_directory")


def _arguments(value: object) -> list[str] | None:
    return _check_strings(value, "arguments")


def _check_slots(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _invalid(f"slots must be an integer of at least 1, not {value!r}")
    return value


# --------------------------------------------------------------------------
# Attributes a caller gives


@attrs.frozen
class SessionAttributes:
    """What a new session needs: the application it runs, and its slots.

    ``slots`` is how many executor slots each of the session's executors
    takes; ``common_data`` is given to the application once per executor.
    The arguments are checked here, so that a bad one fails before any call.
    """

    application: str = attrs.field(converter=_application_name)
    slots: int = attrs.field(default=1, converter=_check_slots)
    common_data: CommonData | None = attrs.field(default=None, converter=_common_data)

    @classmethod
    def _coerce(cls, value: object) -> SessionAttributes:
        if isinstance(value, SessionAttributes):
            return value
        if isinstance(value, Mapping):
            session: SessionAttributes = _from_mapping(cls, value, "session attributes")
            return session
        raise _invalid(
            f"session attributes must be SessionAttributes or a dict, not {type(value).__name__}"
        )


@attrs.frozen
class ApplicationAttributes:
    """How the cluster runs an application: its shim, and what that shim needs.

    ``shim`` is required, as in the API reference: a :class:`Shim`, its
    value, or its name (``"shell"``); leaving it out raises FlameError
    ``INVALID_ARGUMENT``. ``name`` may be left empty:
    :meth:`Connection.register_application` takes the name as its own
    argument (if both are given they must agree). ``command`` and
    ``arguments`` say what to start (Stdio and Grpc shims); ``environments``
    are ``NAME=VALUE`` strings (a dict is accepted and turned into them);
    ``working_directory`` is where the command runs::

        ApplicationAttributes(shim=Shim.SHELL)
        ApplicationAttributes("my-app", Shim.STDIO, command="python3")
        ApplicationAttributes(**{"shim": Shim.SHELL, "command": "python"})
    """

    name: str = attrs.field(default="", validator=attrs.validators.instance_of(str))
    # The default only lets ``name`` come first, as in the reference, and
    # still leave ``name`` out: a missing shim is refused by the converter.
    shim: Shim = attrs.field(default=_NO_SHIM, converter=_check_shim)
    url: str | None = attrs.field(default=None, converter=_url)
    command: str | None = attrs.field(default=None, converter=_command)
    arguments: list[str] | None = attrs.field(default=None, converter=_arguments, hash=False)
    environments: list[str] | None = attrs.field(
        default=None, converter=_check_environments, hash=False
    )
    working_directory: str | None = attrs.field(default=None, converter=_working_directory)

    @classmethod
    def _coerce(cls, value: object) -> ApplicationAttributes:
        if isinstance(value, ApplicationAttributes):
            return value
        if isinstance(value, Mapping):
            application: ApplicationAttributes = _from_mapping(cls, value, "application attributes")
            return application
        raise _invalid(
            "application attributes must be ApplicationAttributes or a dict, "
            f"not {type(value).__name__}"
        )


def _from_mapping(cls: type[Any], value: Mapping[Any, Any], what: str) -> Any:
    known = [field.name for field in attrs.fields(cls)]
    for key in value:
        if key not in known:
            raise _invalid(f"unknown key {key!r} in {what}; known keys: {', '.join(known)}")
    try:
        return cls(**value)
    except TypeError as exc:  # a required key is missing
        raise _invalid(f"{what}: {exc}") from None


# --------------------------------------------------------------------------
# Objects the cluster reports


@attrs.frozen
class Task:
    """A task, as the cluster reported it at one moment.

    A ``Task`` is a snapshot: :meth:`SessionClient.get_task` or a watch gives
    a newer one. ``output`` is set once the task has finished.
    """

    id: TaskID
    session_id: SessionID
    state: TaskState
    creation_time: datetime
    input: TaskInput | None = None
    output: TaskOutput | None = None
    completion_time: datetime | None = None

    def is_completed(self) -> bool:
        """True once the task has succeeded or failed: it will not change again."""
        return self.state in _COMPLETED


@attrs.frozen
class Application:
    """A registered application, as the cluster reported it."""

    id: ApplicationID
    name: str
    shim: Shim
    state: ApplicationState
    creation_time: datetime
    url: str | None = None
    command: str | None = None
    arguments: list[str] | None = attrs.field(default=None, hash=False)
    environments: list[str] | None = attrs.field(default=None, hash=False)
    working_directory: str | None = None


# --------------------------------------------------------------------------
# Conversions (private): messages in, types out, each done once.

_EPOCH = datetime.fromtimestamp(0, timezone.utc)


def _time(seconds: int | None) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc) if seconds else _EPOCH


def _optional_time(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)


def _enum(table: tuple[Any, ...], value: int, what: str) -> Any:
    if 0 <= value < len(table):
        return table[value]
    raise FlameError(
        FlameErrorCode.INTERNAL,
        f"the cluster sent {what} {value}, which this SDK does not know; upgrade flame-sdk",
    )


def _task_from_pb(message: pb.Task) -> Task:
    metadata = message.metadata
    spec = message.spec
    status = message.status
    return Task(
        id=metadata.id if metadata is not None else "",
        session_id=spec.session_id if spec is not None else "",
        state=_enum(_TASK_STATES, status.state, "task state")
        if status is not None
        else _TASK_STATES[0],
        creation_time=_time(status.creation_time if status is not None else None),
        input=spec.input if spec is not None else None,
        output=spec.output if spec is not None else None,
        completion_time=_optional_time(status.completion_time) if status is not None else None,
    )


def _task_from_fields(fields: TaskFields) -> Task:
    """The public Task for a message read by :func:`flame._wire.decode_task`."""
    has_status = fields.has_status
    completion = fields.completion_time
    return Task(
        id=fields.id,
        session_id=fields.session_id,
        state=_enum(_TASK_STATES, fields.state, "task state") if has_status else _TASK_STATES[0],
        creation_time=_time(fields.creation_time if has_status else None),
        input=fields.input,
        output=fields.output,
        completion_time=None
        if completion is None or not has_status
        else _optional_time(completion),
    )


def _application_from_pb(message: pb.Application) -> Application:
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


def _application_spec_to_pb(attributes: ApplicationAttributes) -> pb.ApplicationSpec:
    return pb.ApplicationSpec(
        shim=pb.Shim(int(attributes.shim)),
        url=attributes.url,
        command=attributes.command,
        arguments=list(attributes.arguments or ()),
        environments=list(attributes.environments or ()),
        working_directory=attributes.working_directory,
    )


def _session_spec_to_pb(attributes: SessionAttributes) -> pb.SessionSpec:
    return pb.SessionSpec(
        application=attributes.application,
        slots=attributes.slots,
        common_data=attributes.common_data,
    )
