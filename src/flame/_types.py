"""The SDK's data types: ids, states, the attrs classes a caller sees, constants.

Every object here is plain Python, one model for every Flame wire: no
generated message ever reaches a caller. Each wire's codec
(:mod:`flame._wires`) turns its messages into these types and back, and
refuses what its wire cannot carry; the conversion of a ``Task``, made for
every message of every task, is here (:func:`_task_from_fields`), shared by
all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import FlameError, FlameErrorCode, NamedIntEnum

if TYPE_CHECKING:
    from ._wire import TaskFields

__all__ = [
    "DEFAULT_CONTEXT_NAME",
    "DEFAULT_FLAME_CONF",
    "DEFAULT_FLAME_ENDPOINT",
    "Application",
    "ApplicationAttributes",
    "ApplicationID",
    "ApplicationSchema",
    "ApplicationState",
    "CommonData",
    "Event",
    "Executor",
    "ExecutorState",
    "Message",
    "Node",
    "NodeState",
    "ResourceRequirement",
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
"""A session's id. On v0.4 and v0.5 the cluster makes it: a decimal integer, as a
string. On v0.6 the client chooses it (``<application>-<6 letters or digits>``
when not given)."""
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
    """Where a task is in its life: PENDING, RUNNING, then SUCCEED, FAILED or CANCELLED.

    The last three are final (:data:`FINAL_TASK_STATES`): the task will not
    change again.
    """

    PENDING = 0
    """Waiting for an executor."""
    RUNNING = 1
    """An executor is running it."""
    SUCCEED = 2
    """It finished; ``output`` holds what it produced."""
    FAILED = 3
    """It failed; ``output`` usually holds the error's text."""
    CANCELLED = 4
    """Its session was closed before it ran (v0.6 only): it never will."""


class ApplicationState(NamedIntEnum):
    """Whether an application can be used by new sessions."""

    ENABLED = 0
    """Sessions may be created for it."""
    DISABLED = 1
    """It is registered but not usable."""


class Shim(NamedIntEnum):
    """How an executor runs an application's tasks.

    v0.4 has all five. v0.5 and v0.6 have two: their Host shim, which starts
    ``command`` as a long-running service and calls it per task, is
    :attr:`GRPC` (also named :attr:`HOST`), and :attr:`WASM`; the others are
    refused there.
    """

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
    HOST = 4
    """The same member as :attr:`GRPC`, by the name v0.5 and v0.6 give it."""


class ExecutorState(NamedIntEnum):
    """Where an executor is in its life (v0.5 and v0.6)."""

    UNKNOWN = 0
    VOID = 1
    IDLE = 2
    """Ready, bound to no session."""
    BINDING = 3
    BOUND = 4
    """Bound to a session: it runs that session's tasks."""
    UNBINDING = 5
    RELEASING = 6
    RELEASED = 7


class NodeState(NamedIntEnum):
    """Whether a node takes work (v0.6)."""

    UNKNOWN = 0
    READY = 1
    NOT_READY = 2


FINAL_TASK_STATES = frozenset((TaskState.SUCCEED, TaskState.FAILED, TaskState.CANCELLED))
"""The states a task never leaves: the one definition, used wherever a task's end is told."""
_COMPLETED = FINAL_TASK_STATES

# Lookup tables: a tuple index is the cheapest int -> enum conversion, and
# this runs for every message of every task.
_TASK_STATES = tuple(TaskState)
_SESSION_STATES = tuple(SessionState)
_APPLICATION_STATES = tuple(ApplicationState)
_SHIMS = tuple(Shim)
_EXECUTOR_STATES = tuple(ExecutorState)
_NODE_STATES = tuple(NodeState)


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
    names = ", ".join(f"Shim.{name}" for name in Shim.__members__)
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


def _labels(value: object) -> list[str] | None:
    return _check_strings(value, "labels")


def _description(value: object) -> str | None:
    return _check_optional_str(value, "description")


def _image(value: object) -> str | None:
    return _check_optional_str(value, "image")


def _installer(value: object) -> str | None:
    return _check_optional_str(value, "installer")


def _schema_input(value: object) -> str | None:
    return _check_optional_str(value, "schema input")


def _schema_output(value: object) -> str | None:
    return _check_optional_str(value, "schema output")


def _schema_common_data(value: object) -> str | None:
    return _check_optional_str(value, "schema common_data")


def _check_slots(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _invalid(f"slots must be an integer of at least 1, not {value!r}")
    return value


_UINT32 = (1 << 32) - 1
_UINT64 = (1 << 64) - 1
_INT32 = (1 << 31) - 1
_INT64 = (1 << 63) - 1


def _check_count(value: object, what: str, maximum: int = _UINT32) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise _invalid(f"{what} must be an integer from 0 to {maximum}, not {value!r}")
    return value


def _cpu(value: object) -> int:
    return _check_count(value, "cpu", _UINT64)


def _memory(value: object) -> int:
    return _check_count(value, "memory", _UINT64)


def _gpu(value: object) -> int:
    return _check_count(value, "gpu", _INT32)


def _min_instances(value: object) -> int:
    return _check_count(value, "min_instances")


def _priority(value: object) -> int:
    return _check_count(value, "priority")


def _max_instances(value: object) -> int | None:
    return None if value is None else _check_count(value, "max_instances")


def _delay_release(value: object) -> int | None:
    return None if value is None else _check_count(value, "delay_release", _INT64)


def _session_id(value: object) -> str | None:
    if value is None:
        return None
    return _check_name(value, "the session id")


# --------------------------------------------------------------------------
# Values


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def _size(text: str, whole: str) -> int:
    """``2g``, ``512Mi``, ``1gib``, ``4096``: bytes, the suffixes being powers of 1024."""
    lowered = text.strip().lower()
    for tail in ("ib", "i", "b"):
        if lowered.endswith(tail) and lowered[: -len(tail)][-1:].isalpha():
            lowered = lowered[: -len(tail)]
            break
    unit = lowered[-1:] if lowered[-1:].isalpha() else ""
    number = lowered[: len(lowered) - len(unit)].strip()
    if unit not in _SIZE_UNITS or not number.isdigit():
        raise _invalid(
            f"{text!r} in {whole!r} is not a size; write bytes, or a number with k, m, g, t or p"
        )
    return int(number) * _SIZE_UNITS[unit]


def _whole_number(text: str, key: str, whole: str) -> int:
    if not text.strip().isdigit():
        raise _invalid(f"{key}={text!r} in {whole!r} must be a whole number")
    return int(text)


@attrs.frozen
class ResourceRequirement:
    """What one executor of a session needs: ``cpu`` cores, ``memory`` bytes, ``gpu`` devices.

    Accepted wherever one is expected as its text form, ``"cpu=1,mem=2g"``
    (``mem`` or ``memory``; k, m, g, t, p are powers of 1024, with or
    without ``b``, ``i`` or ``ib``), or as a dict of its fields. v0.6
    carries all three; a session's is resolved by the cluster when not given.
    """

    cpu: int = attrs.field(default=0, converter=_cpu)
    memory: int = attrs.field(default=0, converter=_memory)
    gpu: int = attrs.field(default=0, converter=_gpu)

    @classmethod
    def parse(cls, text: str) -> ResourceRequirement:
        """The requirement ``text`` writes, such as ``"cpu=2,mem=4g,gpu=1"``."""
        values: dict[str, int] = {}
        for part in text.split(","):
            if not part.strip():
                continue
            key, equals, value = part.partition("=")
            key = key.strip().lower()
            if not equals or key not in ("cpu", "mem", "memory", "gpu"):
                raise _invalid(
                    f"{part.strip()!r} in {text!r} is not cpu=N, mem=SIZE or gpu=N; "
                    "write e.g. 'cpu=1,mem=2g'"
                )
            if key in ("mem", "memory"):
                values["memory"] = _size(value, text)
            else:
                values[key] = _whole_number(value, key, text)
        return cls(**values)

    def __str__(self) -> str:
        return f"cpu={self.cpu},mem={self.memory},gpu={self.gpu}"


def _resreq(value: object) -> ResourceRequirement | None:
    if value is None or isinstance(value, ResourceRequirement):
        return value
    if isinstance(value, str):
        return ResourceRequirement.parse(value)
    if isinstance(value, Mapping):
        requirement: ResourceRequirement = _from_mapping(
            ResourceRequirement, value, "the resource requirement"
        )
        return requirement
    raise _invalid(
        "resreq must be a ResourceRequirement, its text such as 'cpu=1,mem=2g', or a dict, "
        f"not {type(value).__name__}"
    )


@attrs.frozen
class ApplicationSchema:
    """JSON Schema documents, as text, for an application's input, output and common data."""

    input: str | None = attrs.field(default=None, converter=_schema_input)
    output: str | None = attrs.field(default=None, converter=_schema_output)
    common_data: str | None = attrs.field(default=None, converter=_schema_common_data)


def _schema(value: object) -> ApplicationSchema | None:
    if value is None or isinstance(value, ApplicationSchema):
        return value
    if isinstance(value, Mapping):
        schema: ApplicationSchema = _from_mapping(ApplicationSchema, value, "the schema")
        return schema
    raise _invalid(f"schema must be an ApplicationSchema or a dict, not {type(value).__name__}")


@attrs.frozen
class Event:
    """Something the cluster recorded about a task or a session (v0.5 and v0.6).

    A task's ``code`` is the :class:`TaskState` number it entered (its
    ``message`` says why a task failed); a session's codes are the cluster's
    own (1001: an executor could not bind the session; 1002: binding gave up).
    """

    code: int
    message: str | None
    creation_time: datetime


# --------------------------------------------------------------------------
# Attributes a caller gives


@attrs.frozen
class SessionAttributes:
    """What a new session needs: the application it runs, and how.

    ``slots`` is how many executor slots each of the session's executors
    takes (v0.4 and v0.5; on v0.6 only the default 1 is accepted);
    ``common_data`` is given to the application once per executor.

    On v0.6 also: ``id``, the session's id (else one is made:
    ``<application>-<6 letters or digits>``); ``min_instances`` and
    ``max_instances``, bounds on its executors; ``priority``; ``resreq``, a
    :class:`ResourceRequirement` (or its text, ``"cpu=1,mem=2g"``). On a wire
    without them only their defaults are accepted. The arguments are checked
    here, so that a bad one fails before any call.
    """

    application: str = attrs.field(converter=_application_name)
    slots: int = attrs.field(default=1, converter=_check_slots)
    common_data: CommonData | None = attrs.field(default=None, converter=_common_data)
    id: SessionID | None = attrs.field(default=None, converter=_session_id)
    min_instances: int = attrs.field(default=0, converter=_min_instances)
    max_instances: int | None = attrs.field(default=None, converter=_max_instances)
    priority: int = attrs.field(default=0, converter=_priority)
    resreq: ResourceRequirement | None = attrs.field(default=None, converter=_resreq)

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
    value, or its name (``"shell"``, ``"host"``); leaving it out raises
    FlameError ``INVALID_ARGUMENT``. v0.5 and v0.6 have two shims: ``HOST``
    (the same member as ``GRPC``) and ``WASM``. ``name`` may be left empty:
    :meth:`Connection.register_application` takes the name as its own
    argument (if both are given they must agree). ``command`` and
    ``arguments`` say what to start (Stdio, Grpc and Host shims);
    ``environments`` are ``NAME=VALUE`` strings (a dict is accepted and
    turned into them); ``working_directory`` is where the command runs;
    ``url`` (v0.4, v0.6) where the application comes from::

        ApplicationAttributes(shim=Shim.SHELL)
        ApplicationAttributes("my-app", Shim.STDIO, command="python3")
        ApplicationAttributes(**{"shim": Shim.SHELL, "command": "python"})

    v0.5 and v0.6 also carry ``description``, ``labels``, ``image``,
    ``max_instances``, ``delay_release`` (seconds an idle executor waits for
    the session's next task) and ``schema`` (an :class:`ApplicationSchema`);
    v0.6 ``installer`` (``"python"`` or ``"binary"``). A wire without one
    refuses it when it is set.
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
    description: str | None = attrs.field(default=None, converter=_description)
    labels: list[str] | None = attrs.field(default=None, converter=_labels, hash=False)
    image: str | None = attrs.field(default=None, converter=_image)
    max_instances: int | None = attrs.field(default=None, converter=_max_instances)
    delay_release: int | None = attrs.field(default=None, converter=_delay_release)
    schema: ApplicationSchema | None = attrs.field(default=None, converter=_schema)
    installer: str | None = attrs.field(default=None, converter=_installer)

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
    a newer one. ``output`` is set once the task has finished. ``events``
    (v0.5 and v0.6) are what the cluster recorded about it, oldest first;
    a watch's messages may carry none, GetTask's carry them all.
    """

    id: TaskID
    session_id: SessionID
    state: TaskState
    creation_time: datetime
    input: TaskInput | None = None
    output: TaskOutput | None = None
    completion_time: datetime | None = None
    events: tuple[Event, ...] = ()

    def is_completed(self) -> bool:
        """True once the task is in a final state: it will not change again."""
        return self.state in FINAL_TASK_STATES


@attrs.frozen
class Application:
    """A registered application, as the cluster reported it.

    The fields after ``working_directory`` are those of v0.5 and v0.6 (None,
    or empty, where the wire has none).
    """

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
    description: str | None = None
    labels: list[str] | None = attrs.field(default=None, hash=False)
    image: str | None = None
    max_instances: int | None = None
    delay_release: int | None = None
    schema: ApplicationSchema | None = None
    installer: str | None = None


@attrs.frozen
class Executor:
    """An executor of the cluster, as it reported it (v0.5 and v0.6).

    ``session_id`` is the session it is bound to, if any; ``slots`` is
    v0.5's, ``shim`` v0.6's (None on the other).
    """

    id: str
    node: str
    state: ExecutorState
    session_id: SessionID | None = None
    resreq: ResourceRequirement | None = None
    shim: Shim | None = None
    slots: int | None = None


@attrs.frozen
class Node:
    """A machine that runs executors, as the cluster reported it (v0.6)."""

    name: str
    state: NodeState
    hostname: str = ""
    capacity: ResourceRequirement | None = None
    allocatable: ResourceRequirement | None = None
    arch: str = ""
    os: str = ""
    addresses: tuple[tuple[str, str], ...] = ()
    """``(type, address)`` pairs."""
    last_heartbeat_time: datetime | None = None


# --------------------------------------------------------------------------
# Conversions shared by every wire's codec. Times arrive as whole seconds
# (v0.4, v0.5) or milliseconds (v0.6); ``scale`` is how many units a second
# holds. The Task is converted here, once per message of every task.

_EPOCH = datetime.fromtimestamp(0, timezone.utc)
_UTC = timezone.utc
_fromtimestamp = datetime.fromtimestamp


def _time(value: int | None, scale: int = 1) -> datetime:
    if not value:
        return _EPOCH
    return _fromtimestamp(value if scale == 1 else value / scale, _UTC)


def _optional_time(value: int | None, scale: int = 1) -> datetime | None:
    if value is None:
        return None
    return _fromtimestamp(value if scale == 1 else value / scale, _UTC)


def _enum(table: tuple[Any, ...], value: int, what: str) -> Any:
    if 0 <= value < len(table):
        return table[value]
    raise FlameError(
        FlameErrorCode.INTERNAL,
        f"the cluster sent {what} {value}, which this SDK does not know; upgrade flame-sdk",
    )


def _events(events: Any, scale: int) -> tuple[Event, ...]:
    return tuple(
        Event(code=e.code, message=e.message, creation_time=_time(e.creation_time, scale))
        for e in events
    )


def _task_from_fields(fields: TaskFields, scale: int = 1) -> Task:
    """The public Task for a message read by :func:`flame._wire.decode_task`."""
    has_status = fields.has_status
    completion = fields.completion_time
    events = fields.events
    return Task(
        id=fields.id,
        session_id=fields.session_id,
        state=_enum(_TASK_STATES, fields.state, "task state") if has_status else _TASK_STATES[0],
        creation_time=_time(fields.creation_time if has_status else None, scale),
        input=fields.input,
        output=fields.output,
        completion_time=None
        if completion is None or not has_status
        else _optional_time(completion, scale),
        events=_events(events, scale) if events else (),
    )
