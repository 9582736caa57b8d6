"""Hypothesis strategies for requests whose fields arrive with the wrong wire type.

:func:`wrong_typed` draws the bytes of a message of a generated class in
which one field, at any depth, is sent with a wire type its type cannot have
(a string as a varint, a number length-delimited, a message as 4 bytes, ...),
with the dotted path of that field. Derived from the generated classes' field
metadata alone, not from the checker under test.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import betterproto2
from hypothesis import strategies as st

__all__ = ["proper_wire_types", "valid", "varint", "wrong_typed"]

_VARINT_TYPES = {
    "int32",
    "int64",
    "uint32",
    "uint64",
    "sint32",
    "sint64",
    "bool",
    "enum",
}
_FIXED64_TYPES = {"fixed64", "sfixed64", "double"}
_FIXED32_TYPES = {"fixed32", "sfixed32", "float"}


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def proper_wire_types(meta: betterproto2.FieldMetadata) -> set[int]:
    """The wire types a field may arrive with."""
    if meta.proto_type in _VARINT_TYPES:
        proper = {0}
    elif meta.proto_type in _FIXED64_TYPES:
        proper = {1}
    elif meta.proto_type in _FIXED32_TYPES:
        proper = {5}
    else:
        return {2}
    if meta.repeated:
        proper.add(2)  # packed
    return proper


def _fields(cls: type) -> list[tuple[str, betterproto2.FieldMetadata, type | None]]:
    """Each field: name, metadata, and the message class of a message field."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        meta = field.metadata.get("betterproto")
        if meta is None:
            continue
        sub = None
        if meta.proto_type == "message":
            hint = hints[field.name]
            for arg in (hint, *typing.get_args(hint)):
                if isinstance(arg, type) and issubclass(arg, betterproto2.Message):
                    sub = arg
        found.append((field.name, meta, sub))
    return found


def _value(draw: Any, wire: int) -> bytes:
    if wire == 0:
        return varint(draw(st.integers(0, 2**64 - 1)))
    if wire == 1:
        return draw(st.binary(min_size=8, max_size=8))
    if wire == 5:
        return draw(st.binary(min_size=4, max_size=4))
    data = draw(st.binary(max_size=6))
    return varint(len(data)) + data


def has_fields(cls: type) -> bool:
    return bool(_fields(cls))


@st.composite
def wrong_typed(draw: Any, cls: type) -> tuple[bytes, str]:
    """The bytes of one field of ``cls`` (or inside one) with a wrong wire type, and its path."""
    fields = _fields(cls)
    name, meta, sub = draw(st.sampled_from(fields))
    if sub is not None and _fields(sub) and draw(st.booleans()):
        inner, path = draw(wrong_typed(sub))
        return key(meta.number, 2) + varint(len(inner)) + inner, f"{name}.{path}"
    wire = draw(st.sampled_from(sorted({0, 1, 2, 5} - proper_wire_types(meta))))
    return key(meta.number, wire) + _value(draw, wire), name


_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "sint32": (-(2**31), 2**31 - 1),
    "sfixed32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "fixed32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "sint64": (-(2**63), 2**63 - 1),
    "sfixed64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
    "fixed64": (0, 2**64 - 1),
}


def _scalar(meta: betterproto2.FieldMetadata, kind: Any) -> st.SearchStrategy[Any]:
    proto_type = meta.proto_type
    if proto_type == "string":
        return st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
    if proto_type == "bytes":
        return st.binary(max_size=8)
    if proto_type == "bool":
        return st.booleans()
    if proto_type == "enum":
        return st.sampled_from(list(kind))
    if proto_type in ("float", "double"):
        return st.floats(allow_nan=False, width=32 if proto_type == "float" else 64)
    low, high = _RANGES[proto_type]
    return st.integers(low, high)


@st.composite
def valid(draw: Any, cls: type, depth: int = 0) -> Any:
    """A message of ``cls`` with every field of its type (nested messages two deep)."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        meta = field.metadata.get("betterproto")
        if meta is None:
            continue
        hint = hints[field.name]
        kinds = [
            a
            for a in (hint, *typing.get_args(hint))
            if isinstance(a, type) and a is not type(None) and typing.get_origin(a) is None
        ]
        kind = kinds[-1] if kinds else None
        if meta.proto_type == "message":
            if depth >= 2 or kind is None:
                continue
            one: st.SearchStrategy[Any] = valid(kind, depth + 1)
        elif meta.proto_type == "map":
            continue  # none in the Flame wires
        else:
            one = _scalar(meta, kind)
        if meta.repeated:
            values[field.name] = draw(st.lists(one, max_size=3))
        elif meta.optional or meta.proto_type == "message":
            values[field.name] = draw(st.one_of(st.none(), one))
        else:
            values[field.name] = draw(one)
    return cls(**values)
