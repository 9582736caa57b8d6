"""The hand-written codec of flame._wire against the generated code of every wire.

The cluster's Task encoder gives each wire's generated encoder's bytes, events
and owner included; the client's one Task decoder reads what each wire's
generated decoder reads, from any message any wire's generated encoder writes
(v0.6's Cancelled and events, v0.4's and v0.5's owner), with fields in another
order, repeated, or unknown to it; the client's requests are byte for byte the
generated ones of every wire, and the cluster reads them as the generated code
does.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import betterproto2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flame._proto.v04 import flame as v04
from flame._proto.v05 import flame as v05
from flame._proto.v06.flame import v1 as v06
from flame._wire import (
    HandEncodedTask,
    TaskEvent,
    WireTask,
    decode_create_task,
    decode_get_task,
    decode_task,
    decode_watch_task,
    encode_create_task,
    encode_task,
    encode_task_fields,
    encode_task_request,
)

WIRES: dict[str, ModuleType] = {"v0.4": v04, "v0.5": v05, "v0.6": v06}
by_wire = pytest.mark.parametrize("wire", WIRES)


# Subclasses of v0.5's and v0.6's Task defined outside the generated code, as
# the cluster defines its own; v0.4's is flame._wire.WireTask.
@dataclass(eq=False, repr=False)
class V05WireTask(HandEncodedTask, v05.Task):  # type: ignore[misc]
    pass


@dataclass(eq=False, repr=False)
class V06WireTask(HandEncodedTask, v06.Task):  # type: ignore[misc]
    pass


HAND_ENCODED = {"v0.4": WireTask, "v0.5": V05WireTask, "v0.6": V06WireTask}

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
BLOBS = st.one_of(st.none(), st.binary(max_size=300))
TIMES = st.integers(-(2**63), 2**63 - 1)
INT32_EDGES = [0, 1, -1, 2**31 - 1, -(2**31)]
INT32 = st.one_of(st.sampled_from(INT32_EDGES), st.integers(-(2**31), 2**31 - 1))


def has_owner(pb: ModuleType) -> bool:
    return "owner" in pb.Metadata.__dataclass_fields__


def has_events(pb: ModuleType) -> bool:
    return "events" in pb.TaskStatus.__dataclass_fields__


def events(pb: ModuleType) -> st.SearchStrategy[Any]:
    return st.builds(pb.Event, code=INT32, message=st.one_of(st.none(), TEXT), creation_time=TIMES)


def tasks(pb: ModuleType) -> st.SearchStrategy[Any]:
    """Any Task of the wire of ``pb``: owner and events where the wire has them."""
    owner = {"owner": st.one_of(st.none(), TEXT)} if has_owner(pb) else {}
    status_events = {"events": st.lists(events(pb), max_size=4)} if has_events(pb) else {}
    return st.builds(
        pb.Task,
        metadata=st.one_of(st.none(), st.builds(pb.Metadata, id=TEXT, name=TEXT, **owner)),
        spec=st.one_of(
            st.none(), st.builds(pb.TaskSpec, session_id=TEXT, input=BLOBS, output=BLOBS)
        ),
        status=st.one_of(
            st.none(),
            st.builds(
                pb.TaskStatus,
                state=st.sampled_from(list(pb.TaskState)),
                creation_time=TIMES,
                completion_time=st.one_of(st.none(), TIMES),
                **status_events,
            ),
        ),
    )


def any_wires_task() -> st.SearchStrategy[tuple[str, Any]]:
    return st.sampled_from(sorted(WIRES)).flatmap(
        lambda wire: tasks(WIRES[wire]).map(lambda task: (wire, task))
    )


def generic_bytes(message: Any) -> bytes:
    """What betterproto2's own encoder writes, whatever the class's ``__bytes__``."""
    return betterproto2.Message.__bytes__(message)


# -- the cluster's side: encoding a Task ------------------------------------------------


@by_wire
@settings(max_examples=150)
@given(data=st.data())
def test_encode_task_matches_the_generated_encoder(wire: str, data: st.DataObject) -> None:
    task = data.draw(tasks(WIRES[wire]))
    assert encode_task(task) == bytes(task)


@by_wire
@settings(max_examples=150)
@given(data=st.data())
def test_encode_task_fields_matches_the_generated_encoder(wire: str, data: st.DataObject) -> None:
    pb = WIRES[wire]
    task_id, session_id = data.draw(TEXT), data.draw(TEXT)
    given_input, output = data.draw(BLOBS), data.draw(BLOBS)
    state = data.draw(st.sampled_from(list(pb.TaskState)))
    created, completed = data.draw(TIMES), data.draw(st.one_of(st.none(), TIMES))
    history = data.draw(st.lists(events(pb), max_size=4)) if has_events(pb) else []
    status = pb.TaskStatus(state=state, creation_time=created, completion_time=completed)
    if history:
        status.events = history
    task = pb.Task(
        metadata=pb.Metadata(id=task_id, name=task_id),
        spec=pb.TaskSpec(session_id=session_id, input=given_input, output=output),
        status=status,
    )
    flat = [(e.code, e.message, e.creation_time) for e in history]
    encoded = encode_task_fields(
        task_id, session_id, given_input, output, int(state), created, completed, flat
    )
    assert encoded == generic_bytes(task)


@by_wire
@settings(max_examples=100)
@given(data=st.data())
def test_a_hand_encoded_task_encodes_and_parses_as_the_generated_one(
    wire: str, data: st.DataObject
) -> None:
    pb, cls = WIRES[wire], HAND_ENCODED[wire]
    task = data.draw(tasks(pb))
    hand = cls(metadata=task.metadata, spec=task.spec, status=task.status)
    assert isinstance(hand, pb.Task)
    assert bytes(hand) == hand.SerializeToString() == generic_bytes(hand) == bytes(task)
    assert pb.Task.parse(bytes(hand)) == task
    # Parsing into the subclass resolves its field types in the generated module.
    parsed = cls.parse(bytes(task))
    assert type(parsed) is cls
    assert (parsed.metadata, parsed.spec, parsed.status) == (task.metadata, task.spec, task.status)


FRESH_SUBCLASS = """
from dataclasses import dataclass

from flame._proto.v06.flame import v1
from flame._wire import HandEncodedTask


@dataclass(eq=False, repr=False)
class Task(HandEncodedTask, v1.Task):
    pass


task = Task.parse(bytes.fromhex({data!r}))
assert type(task) is Task and type(task.status) is v1.TaskStatus, task
assert task.status.events == [v1.Event(code=2, message="done", creation_time=5)], task
print("parsed")
"""


def test_a_hand_encoded_subclass_parses_before_its_generated_task_is_used() -> None:
    # betterproto2 reads a class's field types once, by name, in the module
    # that defines the class; a subclass used before its generated Task ever
    # was must be pointed at the generated module. Only a fresh interpreter
    # shows it: after the generated Task's first use, a subclass inherits its
    # field types.
    data = bytes(
        v06.Task(status=v06.TaskStatus(events=[v06.Event(code=2, message="done", creation_time=5)]))
    )
    script = FRESH_SUBCLASS.format(data=data.hex())
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "parsed"


def test_events_are_encoded_in_order_with_every_field() -> None:
    status = v06.TaskStatus(
        state=v06.TaskState.Cancelled,
        events=[
            v06.Event(code=0, message="created", creation_time=1_780_000_000_123),
            v06.Event(code=-1),
            v06.Event(message=""),
        ],
    )
    task = v06.Task(status=status)
    data = encode_task(task)
    assert data == bytes(task)
    assert v06.Task.parse(data).status.events == status.events
    # A negative int32 takes ten bytes, as protobuf writes it.
    assert b"\x08" + b"\xff" * 9 + b"\x01" in data


# -- the client's side: decoding a Task of any wire -------------------------------------


@settings(max_examples=300)
@given(sent=any_wires_task())
def test_decode_task_reads_what_every_wires_generated_decoder_reads(sent: tuple[str, Any]) -> None:
    # One decoder for every wire: whichever wire wrote the bytes, the fields
    # it reads, made into any wire's Task, are what that wire's own decoder
    # reads (a field the wire lacks, such as v0.6's owner, left out).
    _, task = sent
    data = bytes(task)
    fields = decode_task(data)
    for pb in WIRES.values():
        assert fields.to_pb(pb.Task) == pb.Task.parse(data)


@settings(max_examples=300)
@given(sent=any_wires_task())
def test_decode_task_gives_every_field_as_sent(sent: tuple[str, Any]) -> None:
    wire, task = sent
    fields = decode_task(bytes(task))
    metadata, spec, status = task.metadata, task.spec, task.status
    assert fields.has_metadata is (metadata is not None)
    assert fields.has_spec is (spec is not None)
    assert fields.has_status is (status is not None)
    if metadata is not None:
        assert (fields.id, fields.name) == (metadata.id, metadata.name)
        assert fields.owner == (metadata.owner if has_owner(WIRES[wire]) else None)
    if spec is not None:
        assert (fields.session_id, fields.input, fields.output) == (
            spec.session_id,
            spec.input,
            spec.output,
        )
    if status is not None:
        assert fields.state == int(status.state)
        assert (fields.creation_time, fields.completion_time) == (
            status.creation_time,
            status.completion_time,
        )
        sent_events = status.events if has_events(WIRES[wire]) else []
        assert fields.events == tuple(
            TaskEvent(e.code, e.message, e.creation_time) for e in sent_events
        )
    else:
        assert fields.events == ()
    assert fields.finished == (
        status is not None and int(status.state) in (2, 3, 4)  # Succeed, Failed, Cancelled (v0.6)
    )


def test_the_owner_of_a_v05_task_is_read_and_left_out_of_a_v06_task() -> None:
    data = bytes(v05.Task(metadata=v05.Metadata(id="7", name="7", owner="alice")))
    fields = decode_task(data)
    assert fields.owner == "alice"
    assert fields.to_pb(v05.Task).metadata == v05.Metadata(id="7", name="7", owner="alice")
    assert fields.to_pb(v06.Task).metadata == v06.Metadata(id="7", name="7")
    assert fields.to_pb(v06.Task) == v06.Task.parse(data)
    # and v0.6's encoder never writes it: its Metadata has no owner.
    assert decode_task(bytes(fields.to_pb(v06.Task))).owner is None


def test_cancelled_and_events_of_a_v06_task_on_each_wires_classes() -> None:
    task = v06.Task(
        status=v06.TaskStatus(
            state=v06.TaskState.Cancelled,
            creation_time=1_780_000_000_123,
            completion_time=1_780_000_000_456,
            events=[v06.Event(code=0, message="created", creation_time=1_780_000_000_123)],
        )
    )
    fields = decode_task(bytes(task))
    assert (fields.state, fields.finished) == (4, True)
    assert fields.events == (TaskEvent(0, "created", 1_780_000_000_123),)
    assert fields.to_pb(V06WireTask).status == task.status
    assert type(fields.to_pb(V06WireTask)) is V06WireTask
    # v0.4's classes have neither: what v0.4's own decoder reads.
    assert fields.to_pb(WireTask) == WireTask.parse(bytes(task))
    assert not hasattr(fields.to_pb(v04.Task).status, "events")


def test_to_pb_refuses_a_class_that_is_not_generated() -> None:
    with pytest.raises(TypeError, match="not a generated class"):
        decode_task(b"").to_pb(dict)


def _unknown_fields(number: int = 9) -> bytes:
    # One field of every wire type: varint, 64-bit, length-delimited, 32-bit.
    key = number << 3
    return (
        bytes([key | 0, 0x96, 0x01])
        + bytes([key | 1])
        + b"\x00" * 8
        + (bytes([key | 2, 3]) + b"abc" + bytes([key | 5]) + b"\x00" * 4)
    )


@settings(max_examples=100)
@given(sent=any_wires_task())
def test_decode_task_skips_unknown_fields(sent: tuple[str, Any]) -> None:
    wire, task = sent
    pb = WIRES[wire]
    data = _unknown_fields() + bytes(task) + _unknown_fields()
    assert decode_task(data).to_pb(pb.Task) == pb.Task.parse(data) == task


def _field(number: int, payload: bytes) -> bytes:
    assert len(payload) < 0x80
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_decode_task_skips_unknown_fields_inside_an_event() -> None:
    event = _unknown_fields(5) + bytes(v06.Event(code=3, message="boom", creation_time=9))
    data = _field(3, _field(4, event + _unknown_fields(4)))
    fields = decode_task(data)
    assert fields.events == (TaskEvent(3, "boom", 9),)
    assert fields.to_pb(v06.Task) == v06.Task.parse(data)


def test_decode_task_takes_an_events_fields_in_any_order() -> None:
    # creation_time, message, code: the reverse of the encoder's order.
    event = bytes([3 << 3, 5]) + _field(2, b"late") + bytes([1 << 3, 2])
    data = _field(3, _field(4, event) + _field(4, b""))
    assert decode_task(data).events == (TaskEvent(2, "late", 5), TaskEvent(0, None, 0))
    assert decode_task(data).to_pb(v06.Task) == v06.Task.parse(data)


def test_decode_task_merges_a_repeated_part() -> None:
    # Protobuf's rule: a message field seen twice is merged, field by field
    # (the generated decoder keeps the last one whole instead), and the
    # events of both parts are kept, in order.
    first = bytes(v04.Task(spec=v04.TaskSpec(session_id="4", input=b"in")))
    second = bytes(v04.Task(spec=v04.TaskSpec(output=b"out")))
    fields = decode_task(first + second)
    assert (fields.session_id, fields.input, fields.output) == ("4", b"in", b"out")
    one = bytes(v06.Task(status=v06.TaskStatus(events=[v06.Event(code=0)])))
    two = bytes(v06.Task(status=v06.TaskStatus(state=2, events=[v06.Event(code=2)])))
    fields = decode_task(one + two)
    assert (fields.state, fields.events) == (2, (TaskEvent(0, None, 0), TaskEvent(2, None, 0)))


def test_decode_task_takes_fields_in_any_order() -> None:
    task = v04.Task(
        metadata=v04.Metadata(id="7", name="7"),
        spec=v04.TaskSpec(session_id="3", input=b"in", output=b"out"),
        status=v04.TaskStatus(state=v04.TaskState.Failed, creation_time=5, completion_time=9),
    )
    parts = [bytes(v04.Task(status=task.status)), bytes(v04.Task(spec=task.spec))]
    parts.append(bytes(v04.Task(metadata=task.metadata)))
    assert decode_task(b"".join(parts)).to_pb() == task


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a",  # a key and no length
        b"\x0a\x05ab",  # shorter than its length
        b"\x1a\x02\x08",  # a status whose state has no value
        b"\x08\x01",  # the metadata as a number
        b"\x0b",  # a group (wire type 3)
        b"\x1a\x0b\x08" + b"\xff" * 10,  # a number of more than 10 bytes
        b"\x1a\x02\x20\x01",  # an event as a number
        b"\x1a\x04\x22\x02\x08",  # an event whose code has no value
        b"\x1a\x04\x22\x02\x0a\x00",  # an event's code as bytes
        b"\x1a\x04\x22\x02\x10\x01",  # an event's message as a number
        b"\x1a\x03\x22\x05\x08",  # an event longer than its status
    ],
)
def test_decode_task_refuses_what_is_not_a_task(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_task(data)


# -- the client's requests, and the cluster reading them --------------------------------


@by_wire
@settings(max_examples=100)
@given(session_id=TEXT, data=BLOBS)
def test_encode_create_task_matches(wire: str, session_id: str, data: bytes | None) -> None:
    pb = WIRES[wire]
    request = pb.CreateTaskRequest(task=pb.TaskSpec(session_id=session_id, input=data))
    assert encode_create_task(session_id, data) == bytes(request)


@by_wire
@settings(max_examples=100)
@given(task_id=TEXT, session_id=TEXT)
def test_encode_task_request_matches_get_and_watch(
    wire: str, task_id: str, session_id: str
) -> None:
    pb = WIRES[wire]
    encoded = encode_task_request(task_id, session_id)
    assert encoded == bytes(pb.GetTaskRequest(task_id=task_id, session_id=session_id))
    assert encoded == bytes(pb.WatchTaskRequest(task_id=task_id, session_id=session_id))


def _spec_fields(spec: Any) -> tuple[str, bytes | None, bytes | None] | None:
    return None if spec is None else (spec.session_id, spec.input, spec.output)


@by_wire
@settings(max_examples=100)
@given(data=st.data())
def test_decode_create_task_reads_what_the_generated_decoder_reads(
    wire: str, data: st.DataObject
) -> None:
    # The cluster's request decoders serve every wire: the three requests
    # have the same fields on all of them.
    pb = WIRES[wire]
    spec = data.draw(
        st.one_of(st.none(), st.builds(pb.TaskSpec, session_id=TEXT, input=BLOBS, output=BLOBS))
    )
    encoded = bytes(pb.CreateTaskRequest(task=spec))
    expected = _spec_fields(pb.CreateTaskRequest.parse(encoded).task)
    assert _spec_fields(decode_create_task(encoded).task) == expected
    assert _spec_fields(decode_create_task(_unknown_fields() + encoded).task) == expected


@by_wire
@settings(max_examples=100)
@given(task_id=TEXT, session_id=TEXT)
def test_decode_get_and_watch_task_read_what_the_generated_decoder_reads(
    wire: str, task_id: str, session_id: str
) -> None:
    pb = WIRES[wire]
    get = bytes(pb.GetTaskRequest(task_id=task_id, session_id=session_id))
    watch = bytes(pb.WatchTaskRequest(task_id=task_id, session_id=session_id))
    parsed = pb.GetTaskRequest.parse(get)
    assert (decode_get_task(get).task_id, decode_get_task(get).session_id) == (
        parsed.task_id,
        parsed.session_id,
    )
    read = decode_watch_task(watch + _unknown_fields())
    assert (read.task_id, read.session_id) == (task_id, session_id)


def test_decode_create_task_merges_a_repeated_spec() -> None:
    first = bytes(v04.CreateTaskRequest(task=v04.TaskSpec(session_id="2")))
    second = bytes(v04.CreateTaskRequest(task=v04.TaskSpec(input=b"x")))
    request = decode_create_task(first + second)
    assert request.task == v04.TaskSpec(session_id="2", input=b"x")


@pytest.mark.parametrize("decode", [decode_create_task, decode_get_task, decode_watch_task])
def test_request_decoders_refuse_truncated_data(decode: Callable[[bytes], object]) -> None:
    with pytest.raises(ValueError):
        decode(b"\x0a\x05ab")
