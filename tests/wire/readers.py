"""A message's fields in the pages' notation, read from protoc's descriptors and from our code."""

from __future__ import annotations

import dataclasses
import types
import typing
from types import ModuleType
from typing import Any

import betterproto2
from google.protobuf import descriptor_pb2

from .wire_page import Field

FDP = descriptor_pb2.FieldDescriptorProto
SCALAR_TYPES = {
    FDP.TYPE_STRING: "string",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_INT32: "int32",
    FDP.TYPE_INT64: "int64",
    FDP.TYPE_UINT32: "uint32",
    FDP.TYPE_UINT64: "uint64",
}
PYTHON_SCALARS: dict[str, type] = {
    "string": str,
    "bytes": bytes,
    "int32": int,
    "int64": int,
    "uint32": int,
    "uint64": int,
}


def protoc_field(package: str, f: descriptor_pb2.FieldDescriptorProto) -> Field:
    """One field of protoc's descriptor; an enum or message type by its name in ``package``."""
    if f.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
        prefix = f".{package}."
        assert f.type_name.startswith(prefix), f.type_name
        type_name = f.type_name[len(prefix) :]
    else:
        assert f.type in SCALAR_TYPES, f"{f.name}: a scalar type no page uses"
        type_name = SCALAR_TYPES[f.type]
    if f.label == FDP.LABEL_REPEATED:
        label = "repeated"
    else:
        assert f.label == FDP.LABEL_OPTIONAL, f"{f.name}: proto3 has no required fields"
        label = "optional" if f.proto3_optional else ""
    return Field(f.name, type_name, f.number, label)


def _python_type(hint: Any, meta: betterproto2.FieldMetadata) -> Any:
    args = typing.get_args(hint)
    if meta.repeated:
        assert typing.get_origin(hint) is list, hint
        return args[0]
    if meta.optional:
        assert type(None) in args, f"{hint} cannot hold None"
        (inner,) = [a for a in args if a is not type(None)]
        return inner
    assert not isinstance(hint, types.UnionType), hint
    return hint


def generated_fields(pb: ModuleType, message: str) -> dict[Field, str | None]:
    """The fields of our generated ``message``, in number order, each with its oneof (or None).

    betterproto2 marks every message field optional (None is "unset"),
    written `optional` in the .proto or not: the two are the same on the wire,
    so a message field reads here as label "", and protoc's descriptors tell
    the two apart.
    """
    cls = getattr(pb, message)
    found: dict[Field, str | None] = {}
    for field in dataclasses.fields(cls):
        meta = betterproto2.FieldMetadata.get(field)
        assert meta.map_meta is None and meta.unwrap is None, field.name
        python_type = _python_type(typing.get_type_hints(cls)[field.name], meta)
        if meta.proto_type in PYTHON_SCALARS:
            type_name = meta.proto_type
            assert python_type is PYTHON_SCALARS[type_name], field.name
        else:
            type_name = python_type.__name__
            assert getattr(pb, type_name) is python_type, field.name
            is_enum = issubclass(python_type, betterproto2.Enum)
            kind = betterproto2.TYPE_ENUM if is_enum else betterproto2.TYPE_MESSAGE
            assert meta.proto_type == kind, field.name
        if meta.repeated:
            label = "repeated"
        elif meta.proto_type == betterproto2.TYPE_MESSAGE:
            assert meta.optional, field.name
            label = ""
        else:
            label = "optional" if meta.optional else ""
        found[Field(field.name, type_name, meta.number, label)] = meta.group
    return dict(sorted(found.items(), key=lambda item: item[0].number))


def without_optional_messages(
    fields: tuple[Field, ...], messages: typing.Container[str]
) -> tuple[Field, ...]:
    """``fields`` as our generated code can show them: `optional` dropped from message fields."""
    return tuple(
        f._replace(label="") if f.label == "optional" and f.type in messages else f for f in fields
    )
