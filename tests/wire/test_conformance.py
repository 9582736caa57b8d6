"""Our generated codec and Google's protobuf runtime agree on every message.

For each message of proto/, hypothesis draws a value, described as a plain
tree (``{field: value}``; a field with explicit presence is left out when
unset). The tree is built as one of our betterproto2 messages and as a Google
message made from the same .proto files; each side's bytes are decoded by the
other, and the result, read back into a tree, must be the tree we started with.

The strategies are derived from Google's descriptors, so a message or field
added to proto/ is covered without touching this file; a type the wire does not
use yet fails loudly instead of being skipped.
"""

from __future__ import annotations

from typing import Any

import betterproto2
import pytest
from google.protobuf import descriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flame._proto.v04 import flame as pb

from .conftest import GoogleWire
from .wire_page import MESSAGES

FD = descriptor.FieldDescriptor
Tree = dict[str, Any]

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
LARGE = 64 * 1024

# Small enough for the whole module to stay well under its time budget, yet
# every message sees unset, default, extreme and large values.
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _is_repeated(field: FD) -> bool:
    is_repeated = getattr(field, "is_repeated", None)  # protobuf >= 6
    if is_repeated is not None:
        return bool(is_repeated)
    return bool(field.label == FD.LABEL_REPEATED)


def _integers(bounds: tuple[int, int]) -> st.SearchStrategy[int]:
    low, high = bounds
    return st.one_of(
        st.sampled_from([0, 1, -1, low, high, low + 1, high - 1]), st.integers(*bounds)
    )


def _large_bytes() -> st.SearchStrategy[bytes]:
    # Past 64 KiB the length prefix takes three bytes; build from a drawn
    # pattern rather than drawing every byte, which would be slow.
    return st.tuples(st.binary(min_size=1, max_size=64), st.integers(LARGE, LARGE + 4096)).map(
        lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]]
    )


def _large_text() -> st.SearchStrategy[str]:
    return st.tuples(st.text(min_size=1, max_size=16), st.integers(LARGE // 4, LARGE)).map(
        lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]]
    )


def _enum_values(enum: descriptor.EnumDescriptor) -> st.SearchStrategy[int]:
    known = sorted(v.number for v in enum.values)
    # proto3 enums are open: a newer peer may send a value we do not know,
    # and it has to survive a round trip (negative ones take ten bytes).
    unknown = st.integers(*INT32).filter(lambda n: n not in known)
    return st.one_of(st.sampled_from(known), unknown)


def _scalar(field: FD) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FD.TYPE_STRING:
        return st.one_of(st.just(""), st.text(), _large_text())
    if kind == FD.TYPE_BYTES:
        return st.one_of(st.just(b""), st.binary(max_size=256), _large_bytes())
    if kind == FD.TYPE_INT32:
        return _integers(INT32)
    if kind == FD.TYPE_INT64:
        return _integers(INT64)
    if kind == FD.TYPE_ENUM:
        return _enum_values(field.enum_type)
    raise AssertionError(f"{field.full_name}: no strategy for protobuf type {kind}; add one")


def _default(field: FD) -> Any:
    return {FD.TYPE_STRING: "", FD.TYPE_BYTES: b""}.get(field.type, 0)


def trees(desc: descriptor.Descriptor) -> st.SearchStrategy[Tree]:
    """Values of one message, as trees; unset presence fields are absent keys."""
    always: dict[str, st.SearchStrategy[Any]] = {}
    maybe: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        if field.message_type is not None:
            single: st.SearchStrategy[Any] = st.deferred(lambda f=field: trees(f.message_type))
        else:
            single = _scalar(field)
        if _is_repeated(field):
            always[field.name] = st.lists(single, max_size=4)
        elif field.has_presence:
            # Set-to-the-default is the case that tells presence from absence.
            if field.message_type is None:
                single = st.one_of(st.just(_default(field)), single)
            maybe[field.name] = single
        else:
            always[field.name] = single
    return st.fixed_dictionaries(always, optional=maybe)


# -- building and reading both sides ------------------------------------------------


def to_ours(desc: descriptor.Descriptor, tree: Tree) -> betterproto2.Message:
    def convert(field: FD, value: Any) -> Any:
        if field.message_type is not None:
            return to_ours(field.message_type, value)
        if field.enum_type is not None:
            return getattr(pb, field.enum_type.name)(value)
        return value

    kwargs = {}
    for name, value in tree.items():
        field = desc.fields_by_name[name]
        if _is_repeated(field):
            kwargs[name] = [convert(field, v) for v in value]
        else:
            kwargs[name] = convert(field, value)
    message: betterproto2.Message = getattr(pb, desc.name)(**kwargs)
    return message


def from_ours(desc: descriptor.Descriptor, message: betterproto2.Message) -> Tree:
    assert type(message) is getattr(pb, desc.name)

    def read(field: FD, value: Any) -> Any:
        if field.message_type is not None:
            return from_ours(field.message_type, value)
        if field.enum_type is not None:
            assert isinstance(value, getattr(pb, field.enum_type.name)), field.full_name
            return int(value)
        expected = (
            str if field.type == FD.TYPE_STRING else bytes if field.type == FD.TYPE_BYTES else int
        )
        assert type(value) is expected, f"{field.full_name}: {type(value)}"
        return value

    tree: Tree = {}
    for field in desc.fields:
        value = getattr(message, field.name)
        if _is_repeated(field):
            tree[field.name] = [read(field, v) for v in value]
        elif field.has_presence and value is None:
            continue
        else:
            tree[field.name] = read(field, value)
    return tree


def fill_google(desc: descriptor.Descriptor, message: Any, tree: Tree) -> Any:
    for name, value in tree.items():
        field = desc.fields_by_name[name]
        target = getattr(message, name)
        if _is_repeated(field):
            if field.message_type is not None:
                for item in value:
                    fill_google(field.message_type, target.add(), item)
            else:
                target.extend(value)
        elif field.message_type is not None:
            target.SetInParent()  # present even when every field is unset
            fill_google(field.message_type, target, value)
        else:
            setattr(message, name, value)
    return message


def from_google(desc: descriptor.Descriptor, message: Any) -> Tree:
    def read(field: FD, value: Any) -> Any:
        if field.message_type is not None:
            return from_google(field.message_type, value)
        return value

    tree: Tree = {}
    for field in desc.fields:
        if _is_repeated(field):
            tree[field.name] = [read(field, v) for v in getattr(message, field.name)]
        elif field.has_presence and not message.HasField(field.name):
            continue
        else:
            tree[field.name] = read(field, getattr(message, field.name))
    return tree


def assert_round_trips(google_wire: GoogleWire, name: str, tree: Tree) -> None:
    desc = google_wire.message(name)
    google_class = google_wire.message_class(name)

    ours = to_ours(desc, tree)
    assert from_ours(desc, ours) == tree  # the builder itself loses nothing
    ours_bytes = bytes(ours)
    assert from_google(desc, google_class.FromString(ours_bytes)) == tree, "ours -> Google"

    google = fill_google(desc, google_class(), tree)
    assert from_google(desc, google) == tree
    google_bytes = google.SerializeToString(deterministic=True)
    parsed = getattr(pb, name).parse(google_bytes)
    assert from_ours(desc, parsed) == tree, "Google -> ours"
    assert parsed == ours

    # Both write fields in number order and skip implicit defaults, so for
    # these messages the encodings are the very same bytes.
    assert ours_bytes == google_bytes


# -- the tests -------------------------------------------------------------------------

COVERED = sorted(MESSAGES)


def test_every_message_of_the_three_files_is_covered(google_wire: GoogleWire) -> None:
    assert set(COVERED) == google_wire.message_names()


@pytest.mark.parametrize("name", COVERED)
@SETTINGS
@given(data=st.data())
def test_round_trip_with_googles_runtime(
    google_wire: GoogleWire, name: str, data: st.DataObject
) -> None:
    tree = data.draw(trees(google_wire.message(name)), label=name)
    assert_round_trips(google_wire, name, tree)


def _leaf_fields(google_wire: GoogleWire) -> list[tuple[str, FD]]:
    return [
        (name, field)
        for name in COVERED
        for field in google_wire.message(name).fields
        if field.message_type is None
    ]


def test_explicit_presence_survives_at_the_default(google_wire: GoogleWire) -> None:
    # optional int64 0, optional bytes b"", optional string "" must arrive as
    # set, in both directions; unset must arrive as unset.
    checked = 0
    for name, field in _leaf_fields(google_wire):
        if _is_repeated(field) or not field.has_presence:
            continue
        assert_round_trips(google_wire, name, {**_minimal(google_wire, name)})
        tree = {**_minimal(google_wire, name), field.name: _default(field)}
        assert_round_trips(google_wire, name, tree)
        assert bytes(to_ours(google_wire.message(name), tree)) != b"", field.full_name
        checked += 1
    assert checked >= 10  # every optional field of the page, not a lucky few


def test_every_enum_value_round_trips_in_every_enum_field(google_wire: GoogleWire) -> None:
    checked = set()
    for name, field in _leaf_fields(google_wire):
        if field.enum_type is None:
            continue
        for value in field.enum_type.values:
            item = [value.number] if _is_repeated(field) else value.number
            assert_round_trips(google_wire, name, {**_minimal(google_wire, name), field.name: item})
            checked.add((field.enum_type.name, value.name))
    all_values = {
        (enum.name, value.name)
        for file in google_wire.files.values()
        for enum in file.enum_type
        for value in enum.value
    }
    assert checked == all_values


def test_nested_and_repeated_messages_round_trip(google_wire: GoogleWire) -> None:
    # A hand-written case of what a ListSession answer really carries.
    session = {
        "metadata": {"id": "1", "name": "ping", "owner": ""},
        "spec": {"application": "ping", "slots": 2, "common_data": b""},
        "status": {
            "state": 1,
            "creation_time": 1_700_000_000,
            "completion_time": 0,
            "pending": 0,
            "running": 0,
            "succeed": 10_000,
            "failed": 0,
        },
    }
    assert_round_trips(google_wire, "SessionList", {"sessions": [session, {}, session]})


def _minimal(google_wire: GoogleWire, name: str) -> Tree:
    """The tree of an empty message: implicit fields at their defaults."""
    tree: Tree = {}
    for field in google_wire.message(name).fields:
        if _is_repeated(field):
            tree[field.name] = []
        elif not field.has_presence:
            tree[field.name] = _default(field)
    return tree
