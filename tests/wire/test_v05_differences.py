"""v0.5 differs from v0.6 exactly as ``flame-v0.6.md`` §10.1 says, row by row.

``page_v05`` builds v0.5's page from v0.6's with these rows applied; here each
row is checked again, independently of that module, against what protoc
builds from ``proto/v0.5`` and ``proto/v0.6`` and against our generated code of
both, and everything the section does not list must be identical ("checked
field by field with a script", it says).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import GoogleWire
from .pages import generated
from .readers import generated_fields, protoc_field, without_optional_messages
from .wire_page import Field, parse_fields

Fields = tuple[Field, ...]


class Wires:
    """v0.5 and v0.6 as protoc and our generated code both show them."""

    def __init__(self, google_wires: Callable[[str], GoogleWire]) -> None:
        self.google = {wire: google_wires(wire) for wire in ("v0.5", "v0.6")}

    def messages(self, wire: str) -> set[str]:
        return self.google[wire].message_names()

    def fields(self, wire: str, message: str) -> Fields:
        google = self.google[wire]
        proto = google.message_proto(message)
        found = tuple(protoc_field(google.page.package, f) for f in proto.field)
        # Our code must say the same, as far as it can (see readers).
        ours = tuple(generated_fields(generated(wire), message))
        assert ours == without_optional_messages(found, self.messages(wire)), (wire, message)
        return found

    def reserved(self, wire: str, message: str) -> tuple[list[int], list[str]]:
        proto = self.google[wire].message_proto(message)
        numbers = [n for r in proto.reserved_range for n in range(r.start, r.end)]
        return numbers, list(proto.reserved_name)

    def enum(self, wire: str, name: str) -> dict[str, int]:
        files = self.google[wire].files.values()
        (enum,) = [e for f in files for e in f.enum_type if e.name == name]
        values = {v.name: v.number for v in enum.value}
        assert {m.name: m.value for m in getattr(generated(wire), name)} == values
        return values

    def methods(self, wire: str, service: str) -> dict[str, tuple[str, str, bool, bool]]:
        google = self.google[wire]
        found = google.pool.FindServiceByName(f"{google.page.package}.{service}")
        return {
            m.name: (m.input_type.name, m.output_type.name, m.client_streaming, m.server_streaming)
            for m in found.methods
        }

    def paths(self, wire: str) -> set[str]:
        pb = generated(wire)
        return {
            path
            for name in dir(pb)
            if name.endswith("Base") and hasattr(getattr(pb, name), "__mapping__")
            for path in getattr(pb, name)().__mapping__()
        }


@pytest.fixture
def wires(google_wires: Callable[[str], GoogleWire]) -> Wires:
    return Wires(google_wires)


def f(text: str) -> Fields:
    """Fields in the pages' notation."""
    return parse_fields(text)


# Every message §10.1 lists, by how it differs.
CHANGED = {
    "Metadata",
    "SessionStatus",
    "SessionSpec",
    "ApplicationSpec",
    "ExecutorSpec",
    "ResourceRequirement",
    "NodeSpec",
    "NodeStatus",
    "CreateSessionRequest",
    "OpenSessionRequest",
    "ApplicationContext",
    "BindExecutorCompletedRequest",
    "RegisterNodeRequest",
}
ONLY_V05 = {"DeleteTaskRequest"}
ONLY_V06 = {
    "NodeAddress",
    "NodeList",
    "ListNodesRequest",
    "GetNodeRequest",
    "GetNodeResponse",
    "ListTaskRequest",
    "NodeHeartbeat",
    "WatchNodeRequest",
    "WatchNodeResponse",
    "Acknowledgement",
}


def test_all_four_files_use_package_flame_in_v05_and_flame_v1_in_v06(wires: Wires) -> None:
    for wire, package in (("v0.5", "flame"), ("v0.6", "flame.v1")):
        files = wires.google[wire].files
        assert sorted(files) == ["backend.proto", "frontend.proto", "shim.proto", "types.proto"]
        assert {file.package for file in files.values()} == {package}
    assert "/flame.Frontend/CreateTask" in wires.paths("v0.5")
    assert "/flame.Instance/OnTaskInvoke" in wires.paths("v0.5")
    assert "/flame.Backend/LaunchTask" in wires.paths("v0.5")
    assert "/flame.v1.Frontend/CreateTask" in wires.paths("v0.6")
    assert "/flame.v1.Instance/OnTaskInvoke" in wires.paths("v0.6")
    assert "/flame.v1.Backend/LaunchTask" in wires.paths("v0.6")


def test_metadata_has_owner_only_in_v05_and_v06_does_not_reserve_3(wires: Wires) -> None:
    assert wires.fields("v0.5", "Metadata") == f(
        "id: string = 1; name: string = 2; optional owner: string = 3"
    )
    assert wires.fields("v0.6", "Metadata") == f("id: string = 1; name: string = 2")
    assert wires.reserved("v0.6", "Metadata") == ([], [])


def test_task_state_gains_cancelled_in_v06(wires: Wires) -> None:
    v05 = {"Pending": 0, "Running": 1, "Succeed": 2, "Failed": 3}
    assert wires.enum("v0.5", "TaskState") == v05
    assert wires.enum("v0.6", "TaskState") == {**v05, "Cancelled": 4}


def test_session_status_counts_cancelled_only_in_v06(wires: Wires) -> None:
    v05 = wires.fields("v0.5", "SessionStatus")
    assert "cancelled" not in {x.name for x in v05}
    assert wires.fields("v0.6", "SessionStatus") == (*v05, Field("cancelled", "int32", 9, ""))


def test_session_spec_has_slots_in_v05_and_reserves_it_in_v06(wires: Wires) -> None:
    assert wires.fields("v0.5", "SessionSpec") == f(
        "application: string = 2; slots: uint32 = 3; optional common_data: bytes = 4"
    )
    assert wires.reserved("v0.5", "SessionSpec") == ([], [])
    assert wires.fields("v0.6", "SessionSpec") == f(
        "application: string = 2; optional common_data: bytes = 4; min_instances: uint32 = 5; "
        "optional max_instances: uint32 = 6; batch_size: uint32 = 7; priority: uint32 = 8; "
        "optional resreq: ResourceRequirement = 9"
    )
    assert wires.reserved("v0.6", "SessionSpec") == ([3], ["slots"])


def test_application_spec_gains_url_and_installer_in_v06(wires: Wires) -> None:
    v05 = wires.fields("v0.5", "ApplicationSpec")
    assert [x.number for x in v05] == list(range(1, 12))
    assert wires.fields("v0.6", "ApplicationSpec") == (
        *v05,
        Field("url", "string", 12, "optional"),
        Field("installer", "string", 13, "optional"),
    )


def test_executor_spec_has_slots_in_v05_and_shim_in_v06(wires: Wires) -> None:
    assert wires.fields("v0.5", "ExecutorSpec") == f(
        "node: string = 1; resreq: ResourceRequirement = 2; slots: uint32 = 3"
    )
    assert wires.fields("v0.6", "ExecutorSpec") == f(
        "node: string = 1; resreq: ResourceRequirement = 2; shim: Shim = 4"
    )
    assert wires.reserved("v0.6", "ExecutorSpec") == ([3], ["slots"])


def test_resources_and_nodes_grow_in_v06(wires: Wires) -> None:
    assert wires.fields("v0.5", "ResourceRequirement") == f("cpu: uint64 = 1; memory: uint64 = 2")
    assert wires.fields("v0.6", "ResourceRequirement") == f(
        "cpu: uint64 = 1; memory: uint64 = 2; gpu: int32 = 3"
    )
    assert wires.fields("v0.5", "NodeSpec") == ()
    assert wires.fields("v0.6", "NodeSpec") == f("hostname: string = 1")
    v05 = wires.fields("v0.5", "NodeStatus")
    assert [x.number for x in v05] == [1, 2, 3, 4]
    assert wires.fields("v0.6", "NodeStatus") == (
        *v05,
        Field("addresses", "NodeAddress", 5, "repeated"),
        Field("last_heartbeat_time", "int64", 6, ""),
    )


def test_create_session_request_is_not_wire_compatible(wires: Wires) -> None:
    assert wires.fields("v0.5", "CreateSessionRequest") == f("session: SessionSpec = 1")
    assert wires.fields("v0.6", "CreateSessionRequest") == f(
        "session_id: string = 1; session: SessionSpec = 2"
    )
    # Field 1 changed type: v0.5 reads a v0.6 session id as a SessionSpec.
    v05, v06 = generated("v0.5"), generated("v0.6")
    data = bytes(v06.CreateSessionRequest(session_id="\x12\x03abc"))
    assert v05.CreateSessionRequest.parse(data).session == v05.SessionSpec(application="abc")


def test_open_session_request_takes_a_spec_only_in_v06(wires: Wires) -> None:
    assert wires.fields("v0.5", "OpenSessionRequest") == f("session_id: string = 1")
    assert wires.fields("v0.6", "OpenSessionRequest") == f(
        "session_id: string = 1; optional session: SessionSpec = 2"
    )


def test_delete_task_exists_only_in_v05(wires: Wires) -> None:
    assert wires.fields("v0.5", "DeleteTaskRequest") == f(
        "task_id: string = 1; session_id: string = 2"
    )
    assert "DeleteTaskRequest" not in wires.messages("v0.6")
    assert wires.methods("v0.5", "Frontend")["DeleteTask"] == (
        "DeleteTaskRequest",
        "Task",
        False,
        False,
    )
    assert "DeleteTask" not in wires.methods("v0.6", "Frontend")


def test_v05_frontend_is_v06s_without_nodes_and_list_task_plus_delete_task(wires: Wires) -> None:
    v05, v06 = wires.methods("v0.5", "Frontend"), wires.methods("v0.6", "Frontend")
    assert len(v05) == 16 and len(v06) == 18
    assert set(v06) - set(v05) == {"ListNodes", "GetNode", "ListTask"}
    assert set(v05) - set(v06) == {"DeleteTask"}
    assert {name: v05[name] for name in v05 if name in v06} == {
        name: v06[name] for name in v06 if name in v05
    }
    assert v06["ListTask"] == ("ListTaskRequest", "Task", False, True)


def test_application_context_gains_url_and_installer_in_v06(wires: Wires) -> None:
    v05 = wires.fields("v0.5", "ApplicationContext")
    assert [x.number for x in v05] == [1, 2, 3, 4, 5]
    assert wires.fields("v0.6", "ApplicationContext") == (
        *v05,
        Field("url", "string", 6, "optional"),
        Field("installer", "string", 7, "optional"),
    )


def test_v05_backend_has_no_watch_node(wires: Wires) -> None:
    v05, v06 = wires.methods("v0.5", "Backend"), wires.methods("v0.6", "Backend")
    assert set(v06) - set(v05) == {"WatchNode"} and not set(v05) - set(v06)
    assert v06["WatchNode"] == ("WatchNodeRequest", "WatchNodeResponse", True, True)
    assert wires.fields("v0.5", "BindExecutorCompletedRequest") == f("executor_id: string = 1")
    assert wires.fields("v0.6", "BindExecutorCompletedRequest") == f(
        "executor_id: string = 1; optional result: Result = 2"
    )
    assert wires.fields("v0.5", "RegisterNodeRequest") == f("node: Node = 1")
    assert wires.fields("v0.6", "RegisterNodeRequest") == f(
        "node: Node = 1; repeated executors: Executor = 2"
    )


def test_the_messages_each_wire_lacks(wires: Wires) -> None:
    v05, v06 = wires.messages("v0.5"), wires.messages("v0.6")
    assert v05 - v06 == ONLY_V05
    assert v06 - v05 == ONLY_V06


def test_everything_else_is_identical(wires: Wires) -> None:
    shared = wires.messages("v0.5") & wires.messages("v0.6")
    differ = {m for m in shared if wires.fields("v0.5", m) != wires.fields("v0.6", m)}
    assert differ == CHANGED
    for message in shared:
        if message not in {"SessionSpec", "ExecutorSpec"}:
            assert wires.reserved("v0.5", message) == wires.reserved("v0.6", message) == ([], [])
    enums = {"SessionState", "Shim", "ApplicationState", "ExecutorState", "NodeState"}
    for enum in enums:
        assert wires.enum("v0.5", enum) == wires.enum("v0.6", enum), enum
    assert wires.enum("v0.5", "Shim") == {"Host": 0, "Wasm": 1}
    assert wires.methods("v0.5", "Instance") == wires.methods("v0.6", "Instance")
    for wire in ("v0.5", "v0.6"):
        files = wires.google[wire].files.values()
        assert {e.name for f in files for e in f.enum_type} == enums | {"TaskState"}
        assert {s.name for f in files for s in f.service} == {"Frontend", "Backend", "Instance"}
