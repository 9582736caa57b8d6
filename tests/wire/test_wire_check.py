"""flame._wire_check: requests checked against the types of their wire.

Every well-typed message of every generated class passes; a field of any
request sent with a wrong wire type, at any depth, is refused, naming the
field; messages built in code with values of the wrong type or range are
refused; and the hand-written request decoders of flame._wire refuse exactly
what the checked generated decoders refuse.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import betterproto2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flame._proto.v04 import flame as pb
from flame._wire import decode_create_task, decode_get_task, decode_watch_task
from flame._wire_check import WireTypeError, check_message, check_wire, checked

from .faults import has_fields, key, valid, varint, wrong_typed

MESSAGES = sorted(
    (
        cls
        for _, cls in inspect.getmembers(pb, inspect.isclass)
        if issubclass(cls, betterproto2.Message) and cls.__module__ == pb.__name__
    ),
    key=lambda cls: cls.__name__,
)
REQUESTS = [cls for cls in MESSAGES if cls.__name__.endswith("Request") and has_fields(cls)]


def test_the_reported_request_is_refused_naming_its_field() -> None:
    # RegisterApplication{name: "a", application: {command: <varint 1>}}: 7 bytes.
    data = bytes([0x0A, 0x01, 0x61, 0x12, 0x02, 0x18, 0x01])
    # The generated decoder alone takes it, with an int where a str belongs.
    assert pb.RegisterApplicationRequest.parse(data).application.command == 1
    with pytest.raises(WireTypeError) as info:
        checked(pb.RegisterApplicationRequest)(data)
    assert info.value.field == "application.command"
    assert str(info.value) == (
        "RegisterApplicationRequest.application.command should be a string, "
        "but the message carries a varint (wire type 0) there"
    )


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda cls: cls.__name__)
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_well_typed_message_passes(cls: type[Any], data: st.DataObject) -> None:
    message = data.draw(valid(cls))
    check_message(message)
    encoded = bytes(message)
    assert checked(cls)(encoded) == cls.parse(encoded)


@pytest.mark.parametrize("cls", REQUESTS, ids=lambda cls: cls.__name__)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_field_with_a_wrong_wire_type_is_refused(cls: type[Any], data: st.DataObject) -> None:
    good = bytes(data.draw(valid(cls)))
    bad, path = data.draw(wrong_typed(cls))
    with pytest.raises(WireTypeError) as info:
        checked(cls)(good + bad)
    assert info.value.field == path, (info.value, path)
    assert f"{cls.__name__}.{path} should be " in str(info.value)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x0a\x05ab", ["ends inside a field"]),  # a string cut short
        (b"\x0a\x01\xff", ["name should be UTF-8 text"]),
        (b"\x0b", ["group start (wire type 3)"]),
        (b"\x77\x00", ["<field 14>", "wire type 7"]),  # even in a field it does not know
        (b"\x0a" + b"\xff" * 10 + b"\x01", ["longer than 10 bytes"]),
    ],
)
def test_bytes_that_are_no_message_are_refused(data: bytes, words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        checked(pb.GetApplicationRequest)(data)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_unknown_fields_are_skipped() -> None:
    data = (
        key(9, 0)
        + varint(5)
        + key(10, 2)
        + varint(2)
        + b"xy"
        + bytes(pb.GetApplicationRequest(name="a"))
    )
    assert checked(pb.GetApplicationRequest)(data).name == "a"


@pytest.mark.parametrize(
    ("message", "field", "expected"),
    [
        (pb.ApplicationSpec(command=1), "command", "a string"),  # type: ignore[arg-type]
        (pb.ApplicationSpec(arguments=["a", b"b"]), "arguments[1]", "a string"),  # type: ignore[list-item]
        (pb.ApplicationSpec(arguments="ab"), "arguments", "a list of strings"),  # type: ignore[arg-type]
        (pb.ApplicationSpec(shim=3), "shim", "a Shim (an enum number)"),
        (pb.SessionSpec(slots=2**31), "slots", "an int32"),
        (pb.SessionSpec(slots=True), "slots", "an int32"),
        (pb.SessionSpec(application=None), "application", "a string"),  # type: ignore[arg-type]
        (pb.SessionSpec(common_data="text"), "common_data", "bytes"),  # type: ignore[arg-type]
        (pb.SessionStatus(creation_time=-(2**63) - 1), "creation_time", "an int64"),
        (
            pb.CreateSessionRequest(session=pb.TaskSpec()),  # type: ignore[arg-type]
            "session",
            "a SessionSpec message",
        ),
        (
            pb.Session(spec=pb.SessionSpec(slots="1")),  # type: ignore[arg-type]
            "spec.slots",
            "an int32",
        ),
    ],
)
def test_values_of_the_wrong_type_or_range_are_refused(
    message: betterproto2.Message, field: str, expected: str
) -> None:
    with pytest.raises(WireTypeError) as info:
        check_message(message)
    assert (info.value.field, info.value.expected) == (field, expected)


def test_an_unknown_enum_number_is_let_through() -> None:
    # proto3 enums are open: the handler decides what an unknown shim means.
    data = bytes([0x12, 0x02, 0x08, 0x0F])
    request = checked(pb.RegisterApplicationRequest)(data)
    assert request.application.shim == 15


@dataclass(eq=False, repr=False)
class Choice(betterproto2.Message):
    text: str | None = betterproto2.field(1, betterproto2.TYPE_STRING, group="pick")
    number: int | None = betterproto2.field(2, betterproto2.TYPE_INT32, group="pick")
    labels: dict[str, int] = betterproto2.field(  # noqa: RUF009
        3,
        betterproto2.TYPE_MAP,
        map_meta=betterproto2.map_meta(betterproto2.TYPE_STRING, betterproto2.TYPE_INT32),
    )
    weights: list[float] = betterproto2.field(4, betterproto2.TYPE_DOUBLE, repeated=True)  # noqa: RUF009


def test_oneofs_maps_and_packed_numbers() -> None:
    both = Choice(text="a", number=1)
    with pytest.raises(WireTypeError, match=r"Choice.pick should be one of its fields at most"):
        check_message(both)
    good = Choice(number=2, labels={"a": 1}, weights=[1.5, 2.5])
    assert checked(Choice)(bytes(good)) == good
    with pytest.raises(WireTypeError) as info:
        check_message(Choice(labels={"a": "1"}))  # type: ignore[dict-item]
    assert info.value.field == "labels['a']"
    # A map entry's value sent as a string.
    entry = key(1, 2) + varint(1) + b"a" + key(2, 2) + varint(1) + b"1"
    with pytest.raises(WireTypeError) as info:
        check_wire(Choice, key(3, 2) + varint(len(entry)) + entry)
    assert info.value.field == "labels[].value"
    # Packed doubles must come in whole 8-byte numbers.
    with pytest.raises(WireTypeError, match="packed 8-byte numbers"):
        check_wire(Choice, key(4, 2) + varint(5) + b"12345")


# --------------------------------------------------------------------------
# The hand-written decoders of the per-task requests


#: A field as it may arrive: number, wire type, and bytes after the key.
RAW_FIELDS = st.tuples(
    st.integers(0, 5),
    st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]),
    st.one_of(
        st.binary(max_size=12),
        st.builds(bytes, valid(pb.TaskSpec)),
        st.text(max_size=4).map(str.encode),
        st.just(b"\xff\xfe"),
    ),
)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    head = key(number, wire)
    if wire == 0:
        return head + varint(int.from_bytes(payload[:9], "little"))
    if wire == 1:
        return head + payload[:8].ljust(8, b"\0")
    if wire == 5:
        return head + payload[:4].ljust(4, b"\0")
    if wire == 2:
        return head + varint(len(payload)) + payload
    return head


def _verdict(decode: Callable[[bytes], Any], data: bytes) -> Any:
    try:
        return decode(data)
    except ValueError:
        return "refused"


@pytest.mark.parametrize(
    ("decode", "cls"),
    [
        (decode_create_task, pb.CreateTaskRequest),
        (decode_get_task, pb.GetTaskRequest),
        (decode_watch_task, pb.WatchTaskRequest),
    ],
    ids=["CreateTask", "GetTask", "WatchTask"],
)
@settings(max_examples=300)
@given(fields=st.lists(RAW_FIELDS, max_size=4), cut=st.integers(0, 3))
def test_the_hand_decoders_refuse_what_the_checked_decoder_refuses(
    decode: Callable[[bytes], Any],
    cls: type[Any],
    fields: list[tuple[int, int, bytes]],
    cut: int,
) -> None:
    data = b"".join(_field(*field) for field in fields)
    data = data[: len(data) - cut] if cut < len(data) else data
    hand, generated = _verdict(decode, data), _verdict(checked(cls), data)
    assert (hand == "refused") == (generated == "refused"), (data, hand, generated)
    numbers = [number for number, _, _ in fields]
    if hand != "refused" and len(numbers) == len(set(numbers)):
        # Fields seen once each: the same values (a repeated one is merged by
        # the hand decoder and replaced by the generated one).
        assert hand == generated
