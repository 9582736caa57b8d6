"""The Flame v0.4 wire contract, as data.

Each table below is the wire page's table written out by hand (field lists keep
the page's own ``[optional|repeated] name: type = number`` notation, so a reader
can hold one against the other line by line). The tests check ``proto/``, the
descriptors Google's ``protoc`` builds from it and the committed generated code
against these facts; they are the single statement of the contract in the repo.
"""

from __future__ import annotations

import re
from typing import NamedTuple

PACKAGE = "flame"
FILES = ("types.proto", "frontend.proto", "shim.proto")
# Both other files import types.proto, and nothing else.
IMPORTS = {"types.proto": (), "frontend.proto": ("types.proto",), "shim.proto": ("types.proto",)}

SCALARS = frozenset({"string", "bytes", "int32", "int64"})

ENUMS: dict[str, dict[str, int]] = {
    "SessionState": {"Open": 0, "Closed": 1},
    "TaskState": {"Pending": 0, "Running": 1, "Succeed": 2, "Failed": 3},
    "Shim": {"Log": 0, "Stdio": 1, "Wasm": 2, "Shell": 3, "Grpc": 4},
    "ApplicationState": {"Enabled": 0, "Disabled": 1},
    "ExecutorState": {
        "ExecutorIdle": 0,
        "ExecutorBound": 1,
        "ExecutorRunning": 2,
        "ExecutorUnknown": 3,
    },
}
ENUM_FILE = "types.proto"

# file -> message -> fields, in the page's notation.
MESSAGE_TABLES: dict[str, dict[str, str]] = {
    "types.proto": {
        "Metadata": "id: string = 1; name: string = 2; optional owner: string = 3",
        "SessionStatus": (
            "state: SessionState = 1; creation_time: int64 = 2; "
            "optional completion_time: int64 = 3; pending: int32 = 4; running: int32 = 5; "
            "succeed: int32 = 6; failed: int32 = 7"
        ),
        "SessionSpec": "application: string = 2; slots: int32 = 3; optional common_data: bytes = 4",
        "Session": "metadata: Metadata = 1; spec: SessionSpec = 2; status: SessionStatus = 3",
        "TaskStatus": (
            "state: TaskState = 1; creation_time: int64 = 2; optional completion_time: int64 = 3"
        ),
        "TaskSpec": "session_id: string = 2; optional input: bytes = 3; optional output: bytes = 4",
        "Task": "metadata: Metadata = 1; spec: TaskSpec = 2; status: TaskStatus = 3",
        "ApplicationStatus": "state: ApplicationState = 1; creation_time: int64 = 2",
        "ApplicationSpec": (
            "shim: Shim = 1; optional url: string = 2; optional command: string = 3; "
            "repeated arguments: string = 4; repeated environments: string = 5; "
            "optional working_directory: string = 6"
        ),
        "Application": (
            "metadata: Metadata = 1; spec: ApplicationSpec = 2; status: ApplicationStatus = 3"
        ),
        "ExecutorSpec": "slots: int32 = 2",
        "ExecutorStatus": "state: ExecutorState = 1",
        "Executor": "metadata: Metadata = 1; spec: ExecutorSpec = 2; status: ExecutorStatus = 3",
        "SessionList": "repeated sessions: Session = 1",
        "ApplicationList": "repeated applications: Application = 1",
        "Result": "return_code: int32 = 1; optional message: string = 2",
        "EmptyRequest": "",
    },
    "frontend.proto": {
        "RegisterApplicationRequest": "name: string = 1; application: ApplicationSpec = 2",
        "UnregisterApplicationRequest": "name: string = 1",
        "UpdateApplicationRequest": "name: string = 1; application: ApplicationSpec = 2",
        "GetApplicationRequest": "name: string = 1",
        "ListApplicationRequest": "",
        "CreateSessionRequest": "session: SessionSpec = 1",
        "DeleteSessionRequest": "session_id: string = 1",
        "OpenSessionRequest": "session_id: string = 1",
        "CloseSessionRequest": "session_id: string = 1",
        "GetSessionRequest": "session_id: string = 1",
        "ListSessionRequest": "",
        "CreateTaskRequest": "task: TaskSpec = 1",
        "DeleteTaskRequest": "task_id: string = 1; session_id: string = 2",
        "GetTaskRequest": "task_id: string = 1; session_id: string = 2",
        "WatchTaskRequest": "task_id: string = 1; session_id: string = 2",
    },
    "shim.proto": {
        "ApplicationContext": (
            "name: string = 1; shim: Shim = 2; optional url: string = 3; "
            "optional command: string = 4"
        ),
        "SessionContext": (
            "session_id: string = 1; application: ApplicationContext = 2; "
            "optional common_data: bytes = 3"
        ),
        "TaskContext": "task_id: string = 1; session_id: string = 2; optional input: bytes = 4",
        "TaskOutput": "optional data: bytes = 1",
        "RegisterServiceRequest": "address: string = 1; service_id: string = 2",
        "RegisterServiceResponse": "",
    },
}

# file -> service -> [(method, request, response, server_streaming)]
SERVICE_TABLES: dict[str, dict[str, list[tuple[str, str, str, bool]]]] = {
    "frontend.proto": {
        "Frontend": [
            ("RegisterApplication", "RegisterApplicationRequest", "Result", False),
            ("UnregisterApplication", "UnregisterApplicationRequest", "Result", False),
            ("UpdateApplication", "UpdateApplicationRequest", "Result", False),
            ("GetApplication", "GetApplicationRequest", "Application", False),
            ("ListApplication", "ListApplicationRequest", "ApplicationList", False),
            ("CreateSession", "CreateSessionRequest", "Session", False),
            ("DeleteSession", "DeleteSessionRequest", "Session", False),
            ("OpenSession", "OpenSessionRequest", "Session", False),
            ("CloseSession", "CloseSessionRequest", "Session", False),
            ("GetSession", "GetSessionRequest", "Session", False),
            ("ListSession", "ListSessionRequest", "SessionList", False),
            ("CreateTask", "CreateTaskRequest", "Task", False),
            ("DeleteTask", "DeleteTaskRequest", "Task", False),
            ("GetTask", "GetTaskRequest", "Task", False),
            ("WatchTask", "WatchTaskRequest", "Task", True),
        ],
    },
    "shim.proto": {
        "GrpcShim": [
            ("OnSessionEnter", "SessionContext", "Result", False),
            ("OnTaskInvoke", "TaskContext", "TaskOutput", False),
            ("OnSessionLeave", "EmptyRequest", "Result", False),
        ],
        "GrpcServiceManager": [
            ("RegisterService", "RegisterServiceRequest", "RegisterServiceResponse", False),
        ],
    },
}


class Field(NamedTuple):
    name: str
    type: str  # a scalar of SCALARS, or the name of an enum or message of the package
    number: int
    label: str  # "" (proto3 implicit presence), "optional" or "repeated"


class Method(NamedTuple):
    service: str
    name: str
    request: str
    response: str
    server_streaming: bool

    @property
    def path(self) -> str:
        """The HTTP/2 path a gRPC call of this method goes to."""
        return f"/{PACKAGE}.{self.service}/{self.name}"


_FIELD = re.compile(r"^(?:(optional|repeated) )?(\w+): (\w+) = (\d+)$")


def _parse_fields(text: str) -> tuple[Field, ...]:
    fields = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        match = _FIELD.match(part)
        if match is None:
            raise ValueError(f"cannot read field {part!r}")
        label, name, type_, number = match.groups()
        fields.append(Field(name, type_, int(number), label or ""))
    return tuple(fields)


MESSAGES: dict[str, tuple[Field, ...]] = {
    name: _parse_fields(text) for table in MESSAGE_TABLES.values() for name, text in table.items()
}
MESSAGE_FILE: dict[str, str] = {
    name: file for file, table in MESSAGE_TABLES.items() for name in table
}
METHODS: tuple[Method, ...] = tuple(
    Method(service, *row)
    for services in SERVICE_TABLES.values()
    for service, rows in services.items()
    for row in rows
)
SERVICE_FILE: dict[str, str] = {
    service: file for file, services in SERVICE_TABLES.items() for service in services
}


def snake_case(name: str) -> str:
    """``CreateTask`` -> ``create_task``: how the generated code names a method."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
