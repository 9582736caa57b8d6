"""The Flame v0.6 wire contract (``flame-v0.6.md``, sections 1 to 5), as data."""

from __future__ import annotations

from .wire_page import BIDIRECTIONAL, SERVER_STREAMING, UNARY, MethodRow, Reserved, WirePage

_ENUMS: dict[str, dict[str, int]] = {
    "SessionState": {"Open": 0, "Closed": 1},
    "TaskState": {"Pending": 0, "Running": 1, "Succeed": 2, "Failed": 3, "Cancelled": 4},
    "Shim": {"Host": 0, "Wasm": 1},
    "ApplicationState": {"Enabled": 0, "Disabled": 1},
    "ExecutorState": {
        "ExecutorUnknown": 0,
        "ExecutorVoid": 1,
        "ExecutorIdle": 2,
        "ExecutorBinding": 3,
        "ExecutorBound": 4,
        "ExecutorUnbinding": 5,
        "ExecutorReleasing": 6,
        "ExecutorReleased": 7,
    },
    "NodeState": {"Unknown": 0, "Ready": 1, "NotReady": 2},
}

# file -> message -> fields, in the page's notation.
_MESSAGE_TABLES: dict[str, dict[str, str]] = {
    # §2: "That is all 29 messages and 6 enums of the file."
    "types.proto": {
        "Metadata": "id: string = 1; name: string = 2",
        "SessionStatus": (
            "state: SessionState = 1; creation_time: int64 = 2; "
            "optional completion_time: int64 = 3; pending: int32 = 4; running: int32 = 5; "
            "succeed: int32 = 6; failed: int32 = 7; repeated events: Event = 8; "
            "cancelled: int32 = 9"
        ),
        "SessionSpec": (
            "application: string = 2; optional common_data: bytes = 4; "
            "min_instances: uint32 = 5; optional max_instances: uint32 = 6; "
            "batch_size: uint32 = 7; priority: uint32 = 8; "
            "optional resreq: ResourceRequirement = 9"
        ),
        "Session": "metadata: Metadata = 1; spec: SessionSpec = 2; status: SessionStatus = 3",
        "TaskStatus": (
            "state: TaskState = 1; creation_time: int64 = 2; "
            "optional completion_time: int64 = 3; repeated events: Event = 4"
        ),
        "TaskSpec": "session_id: string = 2; optional input: bytes = 3; optional output: bytes = 4",
        "Task": "metadata: Metadata = 1; spec: TaskSpec = 2; status: TaskStatus = 3",
        "ApplicationStatus": "state: ApplicationState = 1; creation_time: int64 = 2",
        "Environment": "name: string = 1; value: string = 2",
        "ApplicationSchema": (
            "optional input: string = 1; optional output: string = 2; "
            "optional common_data: string = 3"
        ),
        "ApplicationSpec": (
            "shim: Shim = 1; optional description: string = 2; repeated labels: string = 3; "
            "optional image: string = 4; optional command: string = 5; "
            "repeated arguments: string = 6; repeated environments: Environment = 7; "
            "optional working_directory: string = 8; optional max_instances: uint32 = 9; "
            "optional delay_release: int64 = 10; optional schema: ApplicationSchema = 11; "
            "optional url: string = 12; optional installer: string = 13"
        ),
        "Application": (
            "metadata: Metadata = 1; spec: ApplicationSpec = 2; status: ApplicationStatus = 3"
        ),
        "ExecutorSpec": "node: string = 1; resreq: ResourceRequirement = 2; shim: Shim = 4",
        "ExecutorStatus": "state: ExecutorState = 1; optional session_id: string = 2",
        "Executor": "metadata: Metadata = 1; spec: ExecutorSpec = 2; status: ExecutorStatus = 3",
        "ExecutorList": "repeated executors: Executor = 1",
        "SessionList": "repeated sessions: Session = 1",
        "ApplicationList": "repeated applications: Application = 1",
        "ResourceRequirement": "cpu: uint64 = 1; memory: uint64 = 2; gpu: int32 = 3",
        "NodeSpec": "hostname: string = 1",
        "NodeInfo": "arch: string = 1; os: string = 2",
        "NodeAddress": "type: string = 1; address: string = 2",
        "NodeStatus": (
            "state: NodeState = 1; capacity: ResourceRequirement = 2; "
            "allocatable: ResourceRequirement = 3; info: NodeInfo = 4; "
            "repeated addresses: NodeAddress = 5; last_heartbeat_time: int64 = 6"
        ),
        "Node": "metadata: Metadata = 1; spec: NodeSpec = 2; status: NodeStatus = 3",
        "NodeList": "repeated nodes: Node = 1",
        "Result": "return_code: int32 = 1; optional message: string = 2",
        "TaskResult": (
            "return_code: int32 = 1; optional output: bytes = 2; optional message: string = 3"
        ),
        "EmptyRequest": "",
        "Event": "code: int32 = 1; optional message: string = 2; creation_time: int64 = 3",
    },
    # §3: "That is all 19 messages of the file."
    "frontend.proto": {
        "RegisterApplicationRequest": "name: string = 1; application: ApplicationSpec = 2",
        "UnregisterApplicationRequest": "name: string = 1",
        "UpdateApplicationRequest": "name: string = 1; application: ApplicationSpec = 2",
        "GetApplicationRequest": "name: string = 1",
        "ListApplicationRequest": "",
        "ListExecutorRequest": "",
        "ListNodesRequest": "",
        "GetNodeRequest": "name: string = 1",
        "GetNodeResponse": "node: Node = 1",
        "CreateSessionRequest": "session_id: string = 1; session: SessionSpec = 2",
        "DeleteSessionRequest": "session_id: string = 1",
        "OpenSessionRequest": "session_id: string = 1; optional session: SessionSpec = 2",
        "CloseSessionRequest": "session_id: string = 1",
        "GetSessionRequest": "session_id: string = 1",
        "ListSessionRequest": "",
        "CreateTaskRequest": "task: TaskSpec = 1",
        "GetTaskRequest": "task_id: string = 1; session_id: string = 2",
        "WatchTaskRequest": "task_id: string = 1; session_id: string = 2",
        "ListTaskRequest": "session_id: string = 1",
    },
    # §5
    "backend.proto": {
        "RegisterExecutorRequest": "executor_id: string = 1; executor_spec: ExecutorSpec = 2",
        "UnregisterExecutorRequest": "executor_id: string = 1",
        "BindExecutorRequest": "executor_id: string = 1",
        "BindExecutorResponse": (
            "optional application: Application = 1; optional session: Session = 2"
        ),
        "BindExecutorCompletedRequest": "executor_id: string = 1; optional result: Result = 2",
        "UnbindExecutorRequest": "executor_id: string = 1",
        "UnbindExecutorCompletedRequest": "executor_id: string = 1",
        "LaunchTaskRequest": "executor_id: string = 1",
        "LaunchTaskResponse": "optional task: Task = 1",
        "CompleteTaskRequest": "executor_id: string = 1; task_result: TaskResult = 2",
        "RegisterNodeRequest": "node: Node = 1; repeated executors: Executor = 2",
        "ReleaseNodeRequest": "node_name: string = 1",
        "SyncNodeRequest": "node: Node = 1; repeated executors: Executor = 2",
        "SyncNodeResponse": "node: Node = 1; repeated executors: Executor = 2",
        "WatchNodeRequest": "heartbeat: NodeHeartbeat = 1",
        "NodeHeartbeat": "node_name: string = 1; status: NodeStatus = 2",
        "WatchNodeResponse": "executor: Executor = 1; ack: Acknowledgement = 2",
        "Acknowledgement": "timestamp: int64 = 1",
    },
    # §4
    "shim.proto": {
        "ApplicationContext": (
            "name: string = 1; shim: Shim = 2; optional image: string = 3; "
            "optional command: string = 4; optional working_directory: string = 5; "
            "optional url: string = 6; optional installer: string = 7"
        ),
        "SessionContext": (
            "session_id: string = 1; application: ApplicationContext = 2; "
            "optional common_data: bytes = 3"
        ),
        "TaskContext": "task_id: string = 1; session_id: string = 2; optional input: bytes = 4",
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
            ("ListExecutor", "ListExecutorRequest", "ExecutorList", UNARY),
            ("ListNodes", "ListNodesRequest", "NodeList", UNARY),
            ("GetNode", "GetNodeRequest", "GetNodeResponse", UNARY),
            ("CreateSession", "CreateSessionRequest", "Session", UNARY),
            ("DeleteSession", "DeleteSessionRequest", "Session", UNARY),
            ("OpenSession", "OpenSessionRequest", "Session", UNARY),
            ("CloseSession", "CloseSessionRequest", "Session", UNARY),
            ("GetSession", "GetSessionRequest", "Session", UNARY),
            ("ListSession", "ListSessionRequest", "SessionList", UNARY),
            ("CreateTask", "CreateTaskRequest", "Task", UNARY),
            ("GetTask", "GetTaskRequest", "Task", UNARY),
            ("WatchTask", "WatchTaskRequest", "Task", SERVER_STREAMING),
            ("ListTask", "ListTaskRequest", "Task", SERVER_STREAMING),
        ],
    },
    "backend.proto": {
        "Backend": [
            ("RegisterNode", "RegisterNodeRequest", "Result", UNARY),
            ("SyncNode", "SyncNodeRequest", "SyncNodeResponse", UNARY),
            ("ReleaseNode", "ReleaseNodeRequest", "Result", UNARY),
            ("WatchNode", "WatchNodeRequest", "WatchNodeResponse", BIDIRECTIONAL),
            ("RegisterExecutor", "RegisterExecutorRequest", "Result", UNARY),
            ("UnregisterExecutor", "UnregisterExecutorRequest", "Result", UNARY),
            ("BindExecutor", "BindExecutorRequest", "BindExecutorResponse", UNARY),
            ("BindExecutorCompleted", "BindExecutorCompletedRequest", "Result", UNARY),
            ("UnbindExecutor", "UnbindExecutorRequest", "Result", UNARY),
            ("UnbindExecutorCompleted", "UnbindExecutorCompletedRequest", "Result", UNARY),
            ("LaunchTask", "LaunchTaskRequest", "LaunchTaskResponse", UNARY),
            ("CompleteTask", "CompleteTaskRequest", "Result", UNARY),
        ],
    },
    "shim.proto": {
        "Instance": [
            ("OnSessionEnter", "SessionContext", "Result", UNARY),
            ("OnTaskInvoke", "TaskContext", "TaskResult", UNARY),
            ("OnSessionLeave", "EmptyRequest", "Result", UNARY),
        ],
    },
}

PAGE = WirePage(
    wire="v0.6",
    package="flame.v1",
    generated="flame._proto.v06.flame.v1",
    files=("types.proto", "frontend.proto", "backend.proto", "shim.proto"),
    # §1: frontend, backend and shim each import types.proto; it imports nothing.
    imports={
        "types.proto": (),
        "frontend.proto": ("types.proto",),
        "backend.proto": ("types.proto",),
        "shim.proto": ("types.proto",),
    },
    enums=_ENUMS,
    message_tables=_MESSAGE_TABLES,
    service_tables=_SERVICE_TABLES,
    # "Number 3 and name `slots` are reserved" (both); Metadata's 3 is not.
    reserved={
        "SessionSpec": Reserved(numbers=(3,), names=("slots",)),
        "ExecutorSpec": Reserved(numbers=(3,), names=("slots",)),
    },
    # "a oneof named `response` with executor: Executor = 1 and ack: Acknowledgement = 2"
    oneofs={"WatchNodeResponse": {"response": ("executor", "ack")}},
)
