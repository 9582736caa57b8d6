"""What the embedded cluster knows, in its own terms: applications, sessions, tasks.

The cluster speaks one wire at a time (v0.4 or v0.6), but keeps, stores and
schedules one model, defined here, that holds what either wire can say. Each
frontend (:mod:`flame.local.frontend`) reads its wire's requests into these
records and writes them back as its wire's messages; the session manager,
the executors and the storage know no wire.

* :class:`Application` and :class:`SessionSpec` are frozen values: a change
  makes a new one, and a session keeps the application it started with.
* :class:`Session` and :class:`Task` are the mutable records of the hot path:
  plain slotted classes, changed in place by the session manager alone.

Times are Unix milliseconds everywhere (v0.6 counts in milliseconds, v0.4 in
seconds: the v0.4 frontend divides). A task keeps the times of its changes of
state, from which a v0.6 frontend writes the task's events; nothing else is
made per task.
"""

from __future__ import annotations

import enum
import time

import attrs

from .._errors import NamedIntEnum

__all__ = [
    "DEFAULT_DELAY_RELEASE",
    "DEFAULT_MAX_INSTANCES",
    "DEFAULT_RESOURCES",
    "Application",
    "ApplicationState",
    "Event",
    "Resources",
    "Schema",
    "Session",
    "SessionSpec",
    "SessionState",
    "Shim",
    "Task",
    "TaskState",
    "now_ms",
]


def now_ms() -> int:
    """The time now, in Unix milliseconds."""
    return time.time_ns() // 1_000_000


class Shim(enum.Enum):
    """How executors run an application: each wire names its own kinds.

    v0.4 has Log, Stdio, Wasm, Shell and Grpc; v0.6 has Host and Wasm. Grpc
    and Host both start the application's service and call it per task, each
    through its own wire's contract.
    """

    LOG = "Log"
    STDIO = "Stdio"
    WASM = "Wasm"
    SHELL = "Shell"
    GRPC = "Grpc"
    HOST = "Host"

    @classmethod
    def named(cls, name: str) -> Shim:
        """The kind called ``name`` (any case); KeyError if none is."""
        for kind in cls:
            if kind.value.lower() == name.strip().lower():
                return kind
        raise KeyError(name)


class ApplicationState(NamedIntEnum):
    ENABLED = 0
    DISABLED = 1


class SessionState(NamedIntEnum):
    OPEN = 0
    CLOSED = 1


class TaskState(NamedIntEnum):
    """A task's state; the numbers are those of both wires (v0.4 has no CANCELLED)."""

    PENDING = 0
    RUNNING = 1
    SUCCEED = 2
    FAILED = 3
    CANCELLED = 4


#: States a task leaves no more.
FINAL_STATES = frozenset((TaskState.SUCCEED, TaskState.FAILED, TaskState.CANCELLED))

#: What a v0.6 application gets when its spec leaves them out (the page's defaults).
DEFAULT_MAX_INSTANCES = 1_000_000
DEFAULT_DELAY_RELEASE = 60


@attrs.frozen
class Schema:
    """JSON Schema documents, as text, for an application's input, output and common data."""

    input: str | None = None
    output: str | None = None
    common_data: str | None = None


@attrs.frozen
class Application:
    """A registered application: what runs a session's tasks, and how."""

    name: str
    shim: Shim
    command: str | None = None
    arguments: tuple[str, ...] = ()
    #: (name, value) pairs, in the order given; a name may come twice.
    environments: tuple[tuple[str, str], ...] = ()
    working_directory: str | None = None
    url: str | None = None
    description: str | None = None
    labels: tuple[str, ...] = ()
    image: str | None = None
    max_instances: int | None = None
    #: Seconds an idle executor stays bound to its session (v0.6).
    delay_release: int | None = None
    schema: Schema | None = None
    installer: str | None = None
    state: ApplicationState = ApplicationState.ENABLED
    creation_time: int = 0


@attrs.frozen
class Resources:
    """A ResourceRequirement: cores, bytes of memory, GPUs."""

    cpu: int = 0
    memory: int = 0
    gpu: int = 0


#: What a v0.6 session asks for when it names nothing: one core, 1 GiB.
DEFAULT_RESOURCES = Resources(cpu=1, memory=1 << 30, gpu=0)


@attrs.frozen
class SessionSpec:
    """What a session was created with. ``slots`` is v0.4's; the rest after it v0.6's."""

    application: str
    common_data: bytes | None = None
    slots: int = 1
    min_instances: int = 0
    max_instances: int | None = None
    batch_size: int = 1
    priority: int = 0
    resources: Resources | None = None


class Event:
    """Something that happened to a session: a code, a text, when (ms)."""

    __slots__ = ("code", "creation_time", "message")

    def __init__(self, code: int, message: str | None, creation_time: int) -> None:
        self.code = code
        self.message = message
        self.creation_time = creation_time

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.code, self.message, self.creation_time) == (
            other.code,
            other.message,
            other.creation_time,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Event({self.code}, {self.message!r}, {self.creation_time})"


class Session:
    """A session: its id and spec, its state, its task counters and events.

    The counters count the session's tasks by state; the session manager keeps
    them right as tasks change.
    """

    # __weakref__: that a deleted session is freed can be checked.
    __slots__ = (
        "__weakref__",
        "cancelled",
        "completion_time",
        "creation_time",
        "events",
        "failed",
        "id",
        "pending",
        "running",
        "spec",
        "state",
        "succeed",
    )

    def __init__(
        self,
        session_id: str,
        spec: SessionSpec,
        *,
        state: SessionState = SessionState.OPEN,
        creation_time: int = 0,
        completion_time: int | None = None,
        events: list[Event] | None = None,
    ) -> None:
        self.id = session_id
        self.spec = spec
        self.state = state
        self.creation_time = creation_time
        self.completion_time = completion_time
        self.pending = 0
        self.running = 0
        self.succeed = 0
        self.failed = 0
        self.cancelled = 0
        self.events: list[Event] = events if events is not None else []

    @property
    def is_open(self) -> bool:
        return self.state is SessionState.OPEN

    def count(self, state: TaskState, delta: int) -> None:
        """Add ``delta`` to the counter of ``state``."""
        if state is TaskState.PENDING:
            self.pending += delta
        elif state is TaskState.RUNNING:
            self.running += delta
        elif state is TaskState.SUCCEED:
            self.succeed += delta
        elif state is TaskState.FAILED:
            self.failed += delta
        else:
            self.cancelled += delta

    def counters(self) -> tuple[int, int, int, int, int]:
        """Pending, running, succeed, failed, cancelled."""
        return (self.pending, self.running, self.succeed, self.failed, self.cancelled)


class Task:
    """A task: its input, state, output, and the times of its changes.

    ``running_time`` is when an executor last took it; ``message`` says why
    it failed (the service's text, or the executor's).
    """

    __slots__ = (
        "__weakref__",
        "completion_time",
        "creation_time",
        "id",
        "input",
        "message",
        "output",
        "running_time",
        "session_id",
        "state",
    )

    def __init__(
        self,
        task_id: int,
        session_id: str,
        input: bytes | None,
        creation_time: int,
        state: TaskState = TaskState.PENDING,
        *,
        output: bytes | None = None,
        message: str | None = None,
        running_time: int | None = None,
        completion_time: int | None = None,
    ) -> None:
        self.id = task_id
        self.session_id = session_id
        self.input = input
        self.creation_time = creation_time
        self.state = state
        self.output = output
        self.message = message
        self.running_time = running_time
        self.completion_time = completion_time

    def fields(self) -> tuple[object, ...]:
        """Every field, in order: for comparisons in tests and stores."""
        return (
            self.id,
            self.session_id,
            self.input,
            self.creation_time,
            self.state,
            self.output,
            self.message,
            self.running_time,
            self.completion_time,
        )

    def __repr__(self) -> str:
        return f"Task({self.session_id!r}/{self.id}, {self.state.name})"
