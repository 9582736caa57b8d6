"""The Flame v0.4 wire contract (``flame-v0.4.md``), as data."""

from __future__ import annotations

from .wire_page import SERVER_STREAMING, UNARY, MethodRow, WirePage

_ENUMS: dict[str, dict[str, int]] = {
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

# file -> message -> fields, in the page's notation.
_MESSAGE_TABLES: dict[str, dict[str, str]] = {
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

# file -> service -> [(method, request, response, streaming)]
_SERVICE_TABLES: dict[str, dict[str, list[MethodRow]]] = {
    "frontend.proto": {
        "Frontend": [
            ("RegisterApplication", "RegisterApplicationRequest", "Result", UNARY),
            ("UnregisterApplication", "UnregisterApplicationRequest", "Result", UNARY),
            ("UpdateApplication", "UpdateApplicationRequest", "Result", UNARY),
            ("GetApplication", "GetApplicationRequest", "Application", UNARY),
            ("ListApplication", "ListApplicationRequest", "ApplicationList", UNARY),
            ("CreateSession", "CreateSessionRequest", "Session", UNARY),
            ("DeleteSession", "DeleteSessionRequest", "Session", UNARY),
            ("OpenSession", "OpenSessionRequest", "Session", UNARY),
            ("CloseSession", "CloseSessionRequest", "Session", UNARY),
            ("GetSession", "GetSessionRequest", "Session", UNARY),
            ("ListSession", "ListSessionRequest", "SessionList", UNARY),
            ("CreateTask", "CreateTaskRequest", "Task", UNARY),
            ("DeleteTask", "DeleteTaskRequest", "Task", UNARY),
            ("GetTask", "GetTaskRequest", "Task", UNARY),
            ("WatchTask", "WatchTaskRequest", "Task", SERVER_STREAMING),
        ],
    },
    "shim.proto": {
        "GrpcShim": [
            ("OnSessionEnter", "SessionContext", "Result", UNARY),
            ("OnTaskInvoke", "TaskContext", "TaskOutput", UNARY),
            ("OnSessionLeave", "EmptyRequest", "Result", UNARY),
        ],
        "GrpcServiceManager": [
            ("RegisterService", "RegisterServiceRequest", "RegisterServiceResponse", UNARY),
        ],
    },
}


PAGE = WirePage(
    wire="v0.4",
    package="flame",
    generated="flame._proto.v04.flame",
    files=("types.proto", "frontend.proto", "shim.proto"),
    # Both other files import types.proto, and nothing else.
    imports={"types.proto": (), "frontend.proto": ("types.proto",), "shim.proto": ("types.proto",)},
    enums=_ENUMS,
    message_tables=_MESSAGE_TABLES,
    service_tables=_SERVICE_TABLES,
)
