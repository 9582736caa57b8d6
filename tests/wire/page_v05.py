"""The Flame v0.5 wire contract, as data: v0.6's tables with the differences of §10.1.

§10.1 says everything it does not list is identical to v0.6 ("checked field
by field with a script"), so this page is v0.6's with each listed row applied
by hand, the row quoted beside its edit. ``test_v05_differences`` holds the
generated v0.5 and v0.6 code to each row again, independently of this module.
"""

from __future__ import annotations

from .page_v06 import PAGE as V06
from .wire_page import UNARY, MethodRow, WirePage


def _copy_tables() -> dict[str, dict[str, str]]:
    return {file: dict(table) for file, table in V06.message_tables.items()}


def _insert_after(table: dict[str, str], anchor: str, name: str, text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in table.items():
        out[key] = value
        if key == anchor:
            out[name] = text
    assert name in out, f"{anchor} is not in the table"
    return out


def _replace(table: dict[str, str], name: str, text: str) -> None:
    assert name in table, f"{name} is not in the table"
    table[name] = text


_tables = _copy_tables()
_types = _tables["types.proto"]
_frontend = _tables["frontend.proto"]
_backend = _tables["backend.proto"]
_shim = _tables["shim.proto"]

# Metadata | has optional owner: string = 3
_replace(_types, "Metadata", "id: string = 1; name: string = 2; optional owner: string = 3")
# SessionStatus | no `cancelled`
_replace(
    _types,
    "SessionStatus",
    "state: SessionState = 1; creation_time: int64 = 2; optional completion_time: int64 = 3; "
    "pending: int32 = 4; running: int32 = 5; succeed: int32 = 6; failed: int32 = 7; "
    "repeated events: Event = 8",
)
# SessionSpec | application = 2; slots: uint32 = 3; optional common_data = 4; nothing else
_replace(
    _types,
    "SessionSpec",
    "application: string = 2; slots: uint32 = 3; optional common_data: bytes = 4",
)
# ApplicationSpec | fields 1-11
_replace(
    _types,
    "ApplicationSpec",
    "shim: Shim = 1; optional description: string = 2; repeated labels: string = 3; "
    "optional image: string = 4; optional command: string = 5; "
    "repeated arguments: string = 6; repeated environments: Environment = 7; "
    "optional working_directory: string = 8; optional max_instances: uint32 = 9; "
    "optional delay_release: int64 = 10; optional schema: ApplicationSchema = 11",
)
# ExecutorSpec | node = 1; resreq = 2; slots: uint32 = 3
_replace(
    _types, "ExecutorSpec", "node: string = 1; resreq: ResourceRequirement = 2; slots: uint32 = 3"
)
# ResourceRequirement | cpu = 1; memory = 2
_replace(_types, "ResourceRequirement", "cpu: uint64 = 1; memory: uint64 = 2")
# NodeSpec | no fields
_replace(_types, "NodeSpec", "")
# NodeStatus | fields 1-4
_replace(
    _types,
    "NodeStatus",
    "state: NodeState = 1; capacity: ResourceRequirement = 2; "
    "allocatable: ResourceRequirement = 3; info: NodeInfo = 4",
)
# NodeAddress, NodeList | absent
del _types["NodeAddress"], _types["NodeList"]

# CreateSessionRequest | session: SessionSpec = 1 (no id: the server makes one)
_replace(_frontend, "CreateSessionRequest", "session: SessionSpec = 1")
# OpenSessionRequest | session_id = 1 only
_replace(_frontend, "OpenSessionRequest", "session_id: string = 1")
# ListNodesRequest, GetNodeRequest, GetNodeResponse, ListTaskRequest | absent
for _name in ("ListNodesRequest", "GetNodeRequest", "GetNodeResponse", "ListTaskRequest"):
    del _frontend[_name]
# DeleteTaskRequest | task_id: string = 1; session_id: string = 2
_frontend = _insert_after(
    _frontend,
    "CreateTaskRequest",
    "DeleteTaskRequest",
    "task_id: string = 1; session_id: string = 2",
)

# ApplicationContext (shim) | fields 1-5
_replace(
    _shim,
    "ApplicationContext",
    "name: string = 1; shim: Shim = 2; optional image: string = 3; "
    "optional command: string = 4; optional working_directory: string = 5",
)

# Backend | `BindExecutorCompletedRequest` has only executor_id; `RegisterNodeRequest`
# has only node; no NodeHeartbeat, WatchNodeRequest/Response or Acknowledgement
_replace(_backend, "BindExecutorCompletedRequest", "executor_id: string = 1")
_replace(_backend, "RegisterNodeRequest", "node: Node = 1")
for _name in ("WatchNodeRequest", "NodeHeartbeat", "WatchNodeResponse", "Acknowledgement"):
    del _backend[_name]

_tables["frontend.proto"] = _frontend


def _services() -> dict[str, dict[str, list[MethodRow]]]:
    services = {
        file: {s: list(rows) for s, rows in table.items()}
        for file, table in V06.service_tables.items()
    }
    # Frontend methods | 16 methods: v0.6's 18 without ListNodes, GetNode and
    # ListTask, plus DeleteTask (DeleteTaskRequest -> Task)
    frontend: list[MethodRow] = []
    for row in services["frontend.proto"]["Frontend"]:
        if row[0] in ("ListNodes", "GetNode", "ListTask"):
            continue
        frontend.append(row)
        if row[0] == "CreateTask":
            frontend.append(("DeleteTask", "DeleteTaskRequest", "Task", UNARY))
    services["frontend.proto"]["Frontend"] = frontend
    # Backend | no WatchNode
    backend = services["backend.proto"]["Backend"]
    services["backend.proto"]["Backend"] = [row for row in backend if row[0] != "WatchNode"]
    return services


_ENUMS = {name: dict(values) for name, values in V06.enums.items()}
# TaskState | 0-3 only
del _ENUMS["TaskState"]["Cancelled"]

PAGE = WirePage(
    wire="v0.5",
    # "All four files use `package flame;` in v0.5.0"
    package="flame",
    generated="flame._proto.v05.flame",
    files=V06.files,
    imports=V06.imports,
    enums=_ENUMS,
    message_tables=_tables,
    service_tables=_services(),
    # SessionSpec and ExecutorSpec have `slots` = 3 again: nothing is reserved.
    reserved={},
    oneofs={},  # WatchNodeResponse, the one oneof, is absent
)
