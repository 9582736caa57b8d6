"""Our generated codec and Google's protobuf runtime agree on every message of every wire.

For each message of proto/<wire>/ (v0.4, v0.5, v0.6), hypothesis draws a
value, described as a plain tree (``{field: value}``; a field with explicit
presence is left out when unset; of a oneof, at most one field). The tree is
built as one of our betterproto2 messages and as a Google message made from
the same .proto files; each side's bytes are decoded by the other, and the
result, read back into a tree, must be the tree we started with.

The strategies are derived from Google's descriptors, so a message or field
added to proto/ is covered without touching this file; a type the wire does not
use yet fails loudly instead of being skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import betterproto2
import pytest
from google.protobuf import descriptor, descriptor_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import GoogleWire
from .pages import PAGES, WIRES, generated

FD = descriptor.FieldDescriptor
Tree = dict[str, Any]

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
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
    edges = [v for v in (0, 1, -1, low, high, low + 1, high - 1) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(*bounds))


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
    if kind == FD.TYPE_UINT32:
        return _integers(UINT32)
    if kind == FD.TYPE_UINT64:
        return _integers(UINT64)
    if kind == FD.TYPE_ENUM:
        return _enum_values(field.enum_type)
    raise AssertionError(f"{field.full_name}: no strategy for protobuf type {kind}; add one")


def _default(field: FD) -> Any:
    return {FD.TYPE_STRING: "", FD.TYPE_BYTES: b""}.get(field.type, 0)


def real_oneofs(desc: descriptor.Descriptor) -> list[descriptor.OneofDescriptor]:
    """The message's oneofs, without the synthetic ones of proto3 `optional` fields."""
    proto = descriptor_pb2.DescriptorProto()
    desc.CopyToProto(proto)
    synthetic = {f.oneof_index for f in proto.field if f.proto3_optional}
    return [oneof for i, oneof in enumerate(desc.oneofs) if i not in synthetic]


def trees(desc: descriptor.Descriptor) -> st.SearchStrategy[Tree]:
    """Values of one message, as trees; unset presence fields are absent keys.

    Of each real oneof, at most one field is set.
    """
    always: dict[str, st.SearchStrategy[Any]] = {}
    maybe: dict[str, st.SearchStrategy[Any]] = {}
    oneofs = real_oneofs(desc)
    in_oneof = {field.name for oneof in oneofs for field in oneof.fields}
    for field in desc.fields:
        if field.name in in_oneof:
            continue
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
    tree = st.fixed_dictionaries(always, optional=maybe)
    for oneof in oneofs:
        choices = [st.just({})] + [
            st.deferred(lambda f=field: trees(f.message_type)).map(lambda v, f=field: {f.name: v})
            if field.message_type is not None
            else _scalar(field).map(lambda v, f=field: {f.name: v})
            for field in oneof.fields
        ]
        tree = st.tuples(tree, st.one_of(choices)).map(lambda t: {**t[0], **t[1]})
    return tree


# -- building and reading both sides ------------------------------------------------


def to_ours(pb: ModuleType, desc: descriptor.Descriptor, tree: Tree) -> betterproto2.Message:
    def convert(field: FD, value: Any) -> Any:
        if field.message_type is not None:
            return to_ours(pb, field.message_type, value)
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


def from_ours(pb: ModuleType, desc: descriptor.Descriptor, message: betterproto2.Message) -> Tree:
    assert type(message) is getattr(pb, desc.name)

    def read(field: FD, value: Any) -> Any:
        if field.message_type is not None:
            return from_ours(pb, field.message_type, value)
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


def assert_round_trips(google_wire: GoogleWire, pb: ModuleType, name: str, tree: Tree) -> None:
    desc = google_wire.message(name)
    google_class = google_wire.message_class(name)

    ours = to_ours(pb, desc, tree)
    assert from_ours(pb, desc, ours) == tree  # the builder itself loses nothing
    ours_bytes = bytes(ours)
    assert from_google(desc, google_class.FromString(ours_bytes)) == tree, "ours -> Google"

    google = fill_google(desc, google_class(), tree)
    assert from_google(desc, google) == tree
    google_bytes = google.SerializeToString(deterministic=True)
    parsed = getattr(pb, name).parse(google_bytes)
    assert from_ours(pb, desc, parsed) == tree, "Google -> ours"
    assert parsed == ours

    # Both write fields in number order and skip implicit defaults, so for
    # these messages the encodings are the very same bytes.
    assert ours_bytes == google_bytes


# -- the tests -------------------------------------------------------------------------

EVERY_MESSAGE = [(wire, name) for wire in WIRES for name in sorted(PAGES[wire].messages)]


@pytest.mark.parametrize("wire", WIRES)
def test_every_message_of_the_wires_files_is_covered(google_wire: GoogleWire, wire: str) -> None:
    assert set(PAGES[wire].messages) == google_wire.message_names()


# Slow: 40 examples of every message of three wires; what it checks does
# not change with the Python or the backend, so only the primary session runs it.
@pytest.mark.slow
@pytest.mark.parametrize("wire,name", EVERY_MESSAGE)
@SETTINGS
@given(data=st.data())
def test_round_trip_with_googles_runtime(
    google_wires: Callable[[str], GoogleWire], wire: str, name: str, data: st.DataObject
) -> None:
    # Session-scoped lookups only: hypothesis runs the body many times.
    google_wire = google_wires(wire)
    tree = data.draw(trees(google_wire.message(name)), label=name)
    assert_round_trips(google_wire, generated(wire), name, tree)


def _leaf_fields(google_wire: GoogleWire) -> list[tuple[str, FD]]:
    return [
        (name, field)
        for name in sorted(google_wire.page.messages)
        for field in google_wire.message(name).fields
        if field.message_type is None
    ]


@pytest.mark.parametrize("wire", WIRES)
def test_explicit_presence_survives_at_the_default(google_wire: GoogleWire, pb: ModuleType) -> None:
    # optional int64 0, optional bytes b"", optional string "" must arrive as
    # set, in both directions; unset must arrive as unset.
    checked = 0
    for name, field in _leaf_fields(google_wire):
        if _is_repeated(field) or not field.has_presence:
            continue
        assert_round_trips(google_wire, pb, name, {**_minimal(google_wire, name)})
        tree = {**_minimal(google_wire, name), field.name: _default(field)}
        assert_round_trips(google_wire, pb, name, tree)
        assert bytes(to_ours(pb, google_wire.message(name), tree)) != b"", field.full_name
        checked += 1
    assert checked >= 10  # every optional field of the page, not a lucky few


@pytest.mark.parametrize("wire", WIRES)
def test_every_enum_value_round_trips_in_every_enum_field(
    google_wire: GoogleWire, pb: ModuleType
) -> None:
    checked = set()
    for name, field in _leaf_fields(google_wire):
        if field.enum_type is None:
            continue
        for value in field.enum_type.values:
            item = [value.number] if _is_repeated(field) else value.number
            tree = {**_minimal(google_wire, name), field.name: item}
            assert_round_trips(google_wire, pb, name, tree)
            checked.add((field.enum_type.name, value.name))
    all_values = {
        (enum.name, value.name)
        for file in google_wire.files.values()
        for enum in file.enum_type
        for value in enum.value
    }
    assert checked == all_values


def _oneof_members(google_wire: GoogleWire) -> list[tuple[str, str, Tree, Tree]]:
    """(message, oneof, one member set, another member set) for each real oneof."""
    found = []
    for name in sorted(google_wire.page.messages):
        for oneof in real_oneofs(google_wire.message(name)):
            first, second = (
                {f.name: _minimal(google_wire, f.message_type.name)} for f in oneof.fields
            )
            found.append((name, oneof.name, first, second))
    assert len(found) == sum(len(o) for o in google_wire.page.oneofs.values())
    return found


@pytest.mark.parametrize("wire", WIRES)
def test_each_member_of_a_oneof_round_trips_alone(google_wire: GoogleWire, pb: ModuleType) -> None:
    for name, oneof, first, second in _oneof_members(google_wire):
        for tree in (first, second):
            assert_round_trips(google_wire, pb, name, tree)
            google = fill_google(google_wire.message(name), google_wire.message_class(name)(), tree)
            assert google.WhichOneof(oneof) == next(iter(tree))


def _two_members_on_the_wire(
    google_wire: GoogleWire, pb: ModuleType, name: str, first: Tree, second: Tree
) -> bytes:
    desc = google_wire.message(name)
    return bytes(to_ours(pb, desc, first)) + bytes(to_ours(pb, desc, second))


def test_googles_runtime_keeps_the_last_member_of_a_oneof_seen(
    google_wires: Callable[[str], GoogleWire],
) -> None:
    # Protobuf's rule for a reader that meets two members of one oneof.
    google_wire = google_wires("v0.6")
    pb = generated("v0.6")
    for name, oneof, first, second in _oneof_members(google_wire):
        data = _two_members_on_the_wire(google_wire, pb, name, first, second)
        google = google_wire.message_class(name).FromString(data)
        assert google.WhichOneof(oneof) == next(iter(second))


@pytest.mark.xfail(
    strict=True,
    reason="betterproto2 0.10 keeps every member of a oneof it reads, not the last one; "
    "only a peer that breaks the oneof sends two, and only Backend's WatchNodeResponse has one",
)
def test_betterproto2_keeps_the_last_member_of_a_oneof_seen(
    google_wires: Callable[[str], GoogleWire],
) -> None:
    google_wire = google_wires("v0.6")
    pb = generated("v0.6")
    for name, _, first, second in _oneof_members(google_wire):
        data = _two_members_on_the_wire(google_wire, pb, name, first, second)
        parsed = getattr(pb, name).parse(data)
        assert from_ours(pb, google_wire.message(name), parsed) == second


def test_nested_and_repeated_messages_round_trip_v04(
    google_wires: Callable[[str], GoogleWire],
) -> None:
    # A hand-written case of what a v0.4 ListSession answer really carries.
    google_wire = google_wires("v0.4")
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
    pb = generated("v0.4")
    assert_round_trips(google_wire, pb, "SessionList", {"sessions": [session, {}, session]})


def test_nested_and_repeated_messages_round_trip_v06(
    google_wires: Callable[[str], GoogleWire],
) -> None:
    # A hand-written case of what a v0.6 ListSession answer carries: events,
    # the new counters and a resolved resource requirement.
    google_wire = google_wires("v0.6")
    event = {"code": 3, "message": "exit 1", "creation_time": 1_780_000_000_123}
    session = {
        "metadata": {"id": "flmping-a1B2c3", "name": "flmping-a1B2c3"},
        "spec": {
            "application": "flmping",
            "common_data": b"",
            "min_instances": 0,
            "max_instances": 4,
            "batch_size": 1,
            "priority": 0,
            "resreq": {"cpu": 1, "memory": 1 << 30, "gpu": 0},
        },
        "status": {
            "state": 1,
            "creation_time": 1_780_000_000_000,
            "completion_time": 1_780_000_001_000,
            "pending": 0,
            "running": 0,
            "succeed": 9_999,
            "failed": 1,
            "events": [event, {"code": 0, "creation_time": 1}],
            "cancelled": 2,
        },
    }
    pb = generated("v0.6")
    assert_round_trips(google_wire, pb, "SessionList", {"sessions": [session, {}, session]})


def _minimal(google_wire: GoogleWire, name: str) -> Tree:
    """The tree of an empty message: implicit fields at their defaults."""
    tree: Tree = {}
    for field in google_wire.message(name).fields:
        if _is_repeated(field):
            tree[field.name] = []
        elif not field.has_presence:
            tree[field.name] = _default(field)
    return tree
