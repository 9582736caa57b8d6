"""The hand-written codec of flame._wire against the generated code.

The cluster's Task encoder gives the generated encoder's bytes; the client's
Task decoder reads what the generated decoder reads, from any message the
generated encoder writes, with fields in another order, repeated, or unknown
to it; the client's requests are byte for byte the generated ones.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flame._proto.v04 import flame as pb
from flame._wire import (
    WireTask,
    decode_create_task,
    decode_get_task,
    decode_task,
    decode_watch_task,
    encode_create_task,
    encode_task,
    encode_task_request,
)

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
BLOBS = st.one_of(st.none(), st.binary(max_size=300))
TIMES = st.integers(-(2**63), 2**63 - 1)

TASKS = st.builds(
    pb.Task,
    metadata=st.one_of(
        st.none(),
        st.builds(pb.Metadata, id=TEXT, name=TEXT, owner=st.one_of(st.none(), TEXT)),
    ),
    spec=st.one_of(st.none(), st.builds(pb.TaskSpec, session_id=TEXT, input=BLOBS, output=BLOBS)),
    status=st.one_of(
        st.none(),
        st.builds(
            pb.TaskStatus,
            state=st.sampled_from(list(pb.TaskState)),
            creation_time=TIMES,
            completion_time=st.one_of(st.none(), TIMES),
        ),
    ),
)


@settings(max_examples=300)
@given(task=TASKS)
def test_encode_task_matches_the_generated_encoder(task: pb.Task) -> None:
    assert encode_task(task) == bytes(task)
    wire = WireTask(metadata=task.metadata, spec=task.spec, status=task.status)
    assert isinstance(wire, pb.Task)
    assert bytes(wire) == wire.SerializeToString() == bytes(task)
    assert pb.Task.parse(bytes(wire)) == task


@settings(max_examples=300)
@given(task=TASKS)
def test_decode_task_reads_what_the_generated_decoder_reads(task: pb.Task) -> None:
    data = bytes(task)
    fields = decode_task(data)
    assert fields.to_pb() == pb.Task.parse(data)
    assert fields.finished == (
        task.status is not None and task.status.state in (pb.TaskState.Succeed, pb.TaskState.Failed)
    )


def _unknown_fields() -> bytes:
    # Field 9 of every wire type: varint, 64-bit, length-delimited, 32-bit.
    return (
        bytes([9 << 3 | 0, 0x96, 0x01])
        + bytes([9 << 3 | 1])
        + b"\x00" * 8
        + (bytes([9 << 3 | 2, 3]) + b"abc" + bytes([9 << 3 | 5]) + b"\x00" * 4)
    )


@settings(max_examples=100)
@given(task=TASKS)
def test_decode_task_skips_unknown_fields(task: pb.Task) -> None:
    data = _unknown_fields() + bytes(task) + _unknown_fields()
    assert decode_task(data).to_pb() == pb.Task.parse(data) == task


def test_decode_task_merges_a_repeated_part() -> None:
    # Protobuf's rule: a message field seen twice is merged, field by field
    # (the generated decoder keeps the last one whole instead).
    first = bytes(pb.Task(spec=pb.TaskSpec(session_id="4", input=b"in")))
    second = bytes(pb.Task(spec=pb.TaskSpec(output=b"out")))
    fields = decode_task(first + second)
    assert (fields.session_id, fields.input, fields.output) == ("4", b"in", b"out")


def test_decode_task_takes_fields_in_any_order() -> None:
    task = pb.Task(
        metadata=pb.Metadata(id="7", name="7"),
        spec=pb.TaskSpec(session_id="3", input=b"in", output=b"out"),
        status=pb.TaskStatus(state=pb.TaskState.Failed, creation_time=5, completion_time=9),
    )
    parts = [bytes(pb.Task(status=task.status)), bytes(pb.Task(spec=task.spec))]
    parts.append(bytes(pb.Task(metadata=task.metadata)))
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
    ],
)
def test_decode_task_refuses_what_is_not_a_task(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_task(data)


@settings(max_examples=200)
@given(session_id=TEXT, data=BLOBS)
def test_encode_create_task_matches(session_id: str, data: bytes | None) -> None:
    request = pb.CreateTaskRequest(task=pb.TaskSpec(session_id=session_id, input=data))
    assert encode_create_task(session_id, data) == bytes(request)


@settings(max_examples=200)
@given(task_id=TEXT, session_id=TEXT)
def test_encode_task_request_matches_get_and_watch(task_id: str, session_id: str) -> None:
    encoded = encode_task_request(task_id, session_id)
    assert encoded == bytes(pb.GetTaskRequest(task_id=task_id, session_id=session_id))
    assert encoded == bytes(pb.WatchTaskRequest(task_id=task_id, session_id=session_id))


SPECS = st.one_of(st.none(), st.builds(pb.TaskSpec, session_id=TEXT, input=BLOBS, output=BLOBS))


@settings(max_examples=200)
@given(spec=SPECS)
def test_decode_create_task_reads_what_the_generated_decoder_reads(
    spec: pb.TaskSpec | None,
) -> None:
    data = bytes(pb.CreateTaskRequest(task=spec))
    assert decode_create_task(data) == pb.CreateTaskRequest.parse(data)
    assert decode_create_task(_unknown_fields() + data) == pb.CreateTaskRequest.parse(data)


@settings(max_examples=200)
@given(task_id=TEXT, session_id=TEXT)
def test_decode_get_and_watch_task_read_what_the_generated_decoder_reads(
    task_id: str, session_id: str
) -> None:
    data = encode_task_request(task_id, session_id)
    assert decode_get_task(data) == pb.GetTaskRequest.parse(data)
    assert decode_watch_task(data + _unknown_fields()) == pb.WatchTaskRequest.parse(data)


def test_decode_create_task_merges_a_repeated_spec() -> None:
    first = bytes(pb.CreateTaskRequest(task=pb.TaskSpec(session_id="2")))
    second = bytes(pb.CreateTaskRequest(task=pb.TaskSpec(input=b"x")))
    request = decode_create_task(first + second)
    assert request.task == pb.TaskSpec(session_id="2", input=b"x")


@pytest.mark.parametrize("decode", [decode_create_task, decode_get_task, decode_watch_task])
def test_request_decoders_refuse_truncated_data(decode: Callable[[bytes], object]) -> None:
    with pytest.raises(ValueError):
        decode(b"\x0a\x05ab")
