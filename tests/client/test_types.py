"""The public types: names, values, checks and conversions, as the API reference gives them."""

from __future__ import annotations

import enum
import inspect
import pickle
import subprocess
import sys
from datetime import datetime, timezone

import attrs
import pytest

import flame
from flame._proto.v04 import flame as pb
from flame._types import _task_from_fields
from flame._wire import decode_task
from flame._wires.v04 import application_from_pb as _application_from_pb


def _task_from_pb(message: pb.Task) -> flame.Task:
    return _task_from_fields(decode_task(bytes(message)))


def test_enums_have_the_reference_names_and_values() -> None:
    expected = {
        flame.SessionState: {"OPEN": 0, "CLOSED": 1},
        # CANCELLED: v0.6's, beyond the reference.
        flame.TaskState: {"PENDING": 0, "RUNNING": 1, "SUCCEED": 2, "FAILED": 3, "CANCELLED": 4},
        flame.ApplicationState: {"ENABLED": 0, "DISABLED": 1},
        flame.Shim: {"LOG": 0, "STDIO": 1, "WASM": 2, "SHELL": 3, "GRPC": 4},
    }
    for cls, members in expected.items():
        assert issubclass(cls, enum.IntEnum)
        assert {m.name: m.value for m in cls} == members
    codes = {m.name: m.value for m in flame.FlameErrorCode}
    assert issubclass(flame.FlameErrorCode, enum.IntEnum)
    assert {k: codes[k] for k in ("INVALID_CONFIG", "INVALID_STATE", "INVALID_ARGUMENT")} == {
        "INVALID_CONFIG": 0,
        "INVALID_STATE": 1,
        "INVALID_ARGUMENT": 2,
    }
    assert codes["INTERNAL"] == 3


def test_enums_print_by_name_and_stay_integers() -> None:
    members = [flame.TaskState.RUNNING, flame.Shim.GRPC, flame.FlameErrorCode.INVALID_CONFIG]
    for member in members:
        assert str(member) == member.name
        assert f"{member}" == member.name
        assert f"{member:d}" == str(member.value)
        assert member == member.value


def test_aliases_and_constants() -> None:
    assert flame.TaskID is str and flame.SessionID is str and flame.ApplicationID is str
    assert flame.Message is bytes
    assert flame.TaskInput is bytes and flame.TaskOutput is bytes and flame.CommonData is bytes
    assert flame.DEFAULT_FLAME_CONF == "flame-conf.yaml"
    assert flame.DEFAULT_CONTEXT_NAME == "flame"
    assert flame.DEFAULT_FLAME_ENDPOINT == "http://127.0.0.1:8080"


def test_data_types_are_attrs_classes_with_the_reference_fields() -> None:
    fields = {
        flame.SessionAttributes: ["application", "slots", "common_data"],
        flame.ApplicationAttributes: [
            "name",
            "shim",
            "url",
            "command",
            "arguments",
            "environments",
            "working_directory",
        ],
        flame.Task: [
            "id",
            "session_id",
            "state",
            "creation_time",
            "input",
            "output",
            "completion_time",
        ],
        flame.Application: [
            "id",
            "name",
            "shim",
            "state",
            "creation_time",
            "url",
            "command",
            "arguments",
            "environments",
            "working_directory",
        ],
        flame.Session: [
            "id",
            "application",
            "slots",
            "state",
            "creation_time",
            "pending",
            "running",
            "succeed",
            "failed",
            "completion_time",
        ],
    }
    # What v0.5 and v0.6 brought follows the reference's fields, in this order.
    later = {
        flame.SessionAttributes: ["id", "min_instances", "max_instances", "priority", "resreq"],
        flame.ApplicationAttributes: [
            "description",
            "labels",
            "image",
            "max_instances",
            "delay_release",
            "schema",
            "installer",
        ],
        flame.Task: ["events"],
        flame.Application: [
            "description",
            "labels",
            "image",
            "max_instances",
            "delay_release",
            "schema",
            "installer",
        ],
        flame.Session: [
            "cancelled",
            "min_instances",
            "max_instances",
            "priority",
            "resreq",
            "events",
        ],
    }
    for cls, names in fields.items():
        assert attrs.has(cls)
        public = [f.name for f in attrs.fields(cls) if not f.name.startswith("_")]
        assert public == names + later[cls], cls
    assert issubclass(flame.Session, flame.SessionClient)


def test_every_public_name_is_documented() -> None:
    for name in flame.__all__:
        value = getattr(flame, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), name
        if inspect.isclass(value) and value.__module__.startswith("flame"):
            for attr, member in vars(value).items():
                if attr.startswith("_") or not callable(member):
                    continue
                assert inspect.getdoc(member), f"{name}.{attr}"


def test_session_attributes_are_checked_when_made() -> None:
    attributes = flame.SessionAttributes(application="app", slots=2, common_data=b"x")
    assert (attributes.application, attributes.slots, attributes.common_data) == ("app", 2, b"x")
    assert flame.SessionAttributes("app").slots == 1
    for kwargs, words in [
        ({"application": ""}, "application"),
        ({"application": "app", "slots": 0}, "slots"),
        ({"application": "app", "slots": True}, "slots"),
        ({"application": "app", "slots": 1.5}, "slots"),
        ({"application": "app", "common_data": "text"}, "encode"),
    ]:
        with pytest.raises(flame.FlameError) as caught:
            flame.SessionAttributes(**kwargs)  # type: ignore[arg-type]
        assert caught.value.code == flame.FlameErrorCode.INVALID_ARGUMENT
        assert words in caught.value.message


def test_application_attributes_accept_names_values_and_mappings() -> None:
    attributes = flame.ApplicationAttributes(
        shim="shell", arguments=("a", "b"), environments={"A": "1"}
    )
    assert attributes.shim is flame.Shim.SHELL
    assert attributes.arguments == ["a", "b"]
    assert attributes.environments == ["A=1"]
    assert flame.ApplicationAttributes(shim=4).shim is flame.Shim.GRPC
    assert flame.ApplicationAttributes("app", flame.Shim.STDIO).shim is flame.Shim.STDIO
    assert flame.ApplicationAttributes(**{"shim": flame.Shim.SHELL, "command": "python"}) == (
        flame.ApplicationAttributes(shim=flame.Shim.SHELL, command="python")
    )
    # HOST (v0.5's and v0.6's name) is the same member as GRPC.
    assert flame.ApplicationAttributes(shim="host").shim is flame.Shim.GRPC is flame.Shim.HOST
    for kwargs, words in [
        ({"shim": "nope"}, "shim"),
        ({"shim": 9}, "shim"),
        ({"shim": None}, "shim"),
        ({"shim": "log", "arguments": "python script.py"}, "list of strings"),
        ({"shim": "log", "arguments": ["ok", 3]}, "only strings"),
        ({"shim": "log", "environments": ["NOVALUE"]}, "NAME=VALUE"),
        ({"shim": "log", "command": 5}, "command"),
    ]:
        with pytest.raises(flame.FlameError) as caught:
            flame.ApplicationAttributes(**kwargs)  # type: ignore[arg-type]
        assert caught.value.code == flame.FlameErrorCode.INVALID_ARGUMENT
        assert words in caught.value.message


def test_application_attributes_need_a_shim() -> None:
    # Without one, the application would silently be a Log one, whose tasks
    # succeed with no output.
    shims = "Shim.LOG, Shim.STDIO, Shim.WASM, Shim.SHELL, Shim.GRPC, Shim.HOST"
    for make in (
        lambda: flame.ApplicationAttributes(),
        lambda: flame.ApplicationAttributes("app", command="python"),
    ):
        with pytest.raises(flame.FlameError) as caught:
            make()
        assert caught.value.code == flame.FlameErrorCode.INVALID_ARGUMENT
        assert caught.value.message == f"the application has no shim; give one of {shims}"


def test_is_completed() -> None:
    created = datetime.now(timezone.utc)
    done = {state: flame.Task("1", "1", state, created).is_completed() for state in flame.TaskState}
    assert done == {
        flame.TaskState.PENDING: False,
        flame.TaskState.RUNNING: False,
        flame.TaskState.SUCCEED: True,
        flame.TaskState.FAILED: True,
        flame.TaskState.CANCELLED: True,
    }
    assert {state for state, final in done.items() if final} == flame.FINAL_TASK_STATES


def test_messages_become_plain_objects_with_utc_times() -> None:
    message = pb.Task(
        metadata=pb.Metadata(id="7"),
        spec=pb.TaskSpec(session_id="3", input=b"in", output=b"out"),
        status=pb.TaskStatus(state=pb.TaskState.Succeed, creation_time=100, completion_time=160),
    )
    task = _task_from_pb(message)
    assert task == flame.Task(
        id="7",
        session_id="3",
        state=flame.TaskState.SUCCEED,
        creation_time=datetime(1970, 1, 1, 0, 1, 40, tzinfo=timezone.utc),
        input=b"in",
        output=b"out",
        completion_time=datetime(1970, 1, 1, 0, 2, 40, tzinfo=timezone.utc),
    )
    assert type(task.state) is flame.TaskState
    assert task.creation_time.tzinfo is timezone.utc
    application = _application_from_pb(
        pb.Application(
            metadata=pb.Metadata(id="a", name="a"),
            spec=pb.ApplicationSpec(shim=pb.Shim.Shell, arguments=["x"]),
            status=pb.ApplicationStatus(state=pb.ApplicationState.Disabled, creation_time=5),
        )
    )
    assert type(application.shim) is flame.Shim and application.shim is flame.Shim.SHELL
    assert application.state is flame.ApplicationState.DISABLED
    assert application.arguments == ["x"] and type(application.arguments) is list


def test_an_unknown_state_from_the_cluster_is_a_clear_error() -> None:
    message = pb.Task(metadata=pb.Metadata(id="1"), status=pb.TaskStatus(state=9))  # type: ignore[arg-type]
    with pytest.raises(flame.FlameError) as caught:
        _task_from_pb(message)
    assert caught.value.code == flame.FlameErrorCode.INTERNAL
    assert "task state 9" in caught.value.message


def test_importing_flame_starts_nothing() -> None:
    code = (
        "import sys, threading, flame\n"
        "assert threading.active_count() == 1\n"
        "assert 'yaml' not in sys.modules\n"
        # The command line's libraries are loaded by the `flame` command alone, and
        # rich by a run that asks for progress.
        "assert 'click' not in sys.modules and 'rich' not in sys.modules\n"
        # A wire's generated code is loaded when a connection speaks it.
        "assert not [m for m in sys.modules if m.startswith('flame._proto.v0')]\n"
        "import logging; assert not logging.getLogger('flame').handlers\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_flame_error_carries_its_task_through_pickle() -> None:
    task = flame.Task(
        id="7",
        session_id="3",
        state=flame.TaskState.FAILED,
        creation_time=datetime.fromtimestamp(10, timezone.utc),
        output=b"boom",
    )
    error = flame.FlameError(flame.FlameErrorCode.INTERNAL, "task 7 failed", task=task)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is flame.FlameError and again.task == task
    assert again.code is flame.FlameErrorCode.INTERNAL and again.message == "task 7 failed"
    plain = pickle.loads(pickle.dumps(flame.FlameError(flame.FlameErrorCode.INTERNAL, "x")))
    assert plain.task is None and plain.message == "x"


def test_a_wire_loads_its_own_generated_code_only() -> None:
    code = (
        "import sys, flame._wires as wires\n"
        "wires.wire_for('v0.6')\n"
        "print(sorted(m for m in sys.modules if m.startswith('flame._proto.v0')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "flame._proto.v06" in loaded
    assert "v04" not in loaded and "v05" not in loaded
