"""proto/, and the code generated from it, say exactly what the v0.4 wire page says.

Three witnesses are held against the page's tables (``wire_page``): the
descriptors Google's protoc builds from ``proto/``, the same descriptors as
Google's runtime loads them, and our committed betterproto2 code (message
fields, enums, server bases and client stubs with their gRPC paths).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import betterproto2
import grpclib.const
import pytest
from betterproto2.grpclib.grpclib_client import ServiceStub
from betterproto2.grpclib.grpclib_server import ServiceBase
from google.protobuf import descriptor_pb2

from flame._proto.v04 import flame as pb

from .conftest import GoogleWire
from .wire_page import (
    ENUM_FILE,
    ENUMS,
    FILES,
    IMPORTS,
    MESSAGE_FILE,
    MESSAGE_TABLES,
    MESSAGES,
    METHODS,
    PACKAGE,
    SCALARS,
    SERVICE_FILE,
    SERVICE_TABLES,
    Field,
    Method,
    snake_case,
)

FDP = descriptor_pb2.FieldDescriptorProto
SCALAR_TYPES = {
    FDP.TYPE_STRING: "string",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_INT32: "int32",
    FDP.TYPE_INT64: "int64",
}
PYTHON_SCALARS: dict[str, type] = {"string": str, "bytes": bytes, "int32": int, "int64": int}


def test_the_wire_page_tables_are_self_consistent() -> None:
    # Guards the data itself: a typo in a type name would otherwise only show
    # up as a confusing mismatch further down.
    known = SCALARS | ENUMS.keys() | MESSAGES.keys()
    for message, fields in MESSAGES.items():
        assert len({f.number for f in fields}) == len(fields), message
        for f in fields:
            assert f.type in known, f"{message}.{f.name}: unknown type {f.type}"
    for m in METHODS:
        assert m.request in MESSAGES and m.response in MESSAGES, m
    assert len(MESSAGES) == sum(len(t) for t in MESSAGE_TABLES.values())


# -- Google's protoc ---------------------------------------------------------------


def test_every_file_is_proto3_in_package_flame(google_wire: GoogleWire) -> None:
    assert sorted(google_wire.files) == sorted(FILES)
    for name, file in google_wire.files.items():
        assert file.syntax == "proto3", name
        assert file.package == PACKAGE, name
        assert tuple(file.dependency) == IMPORTS[name], name


def test_each_file_declares_exactly_the_pages_messages_enums_and_services(
    google_wire: GoogleWire,
) -> None:
    for name, file in google_wire.files.items():
        assert [m.name for m in file.message_type] == list(MESSAGE_TABLES.get(name, {})), name
        expected_enums = list(ENUMS) if name == ENUM_FILE else []
        assert sorted(e.name for e in file.enum_type) == sorted(expected_enums), name
        assert [s.name for s in file.service] == list(SERVICE_TABLES.get(name, {})), name


def _field_from_protoc(f: descriptor_pb2.FieldDescriptorProto) -> Field:
    if f.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
        prefix = f".{PACKAGE}."
        assert f.type_name.startswith(prefix), f.type_name
        type_name = f.type_name[len(prefix) :]
        kind = FDP.TYPE_ENUM if type_name in ENUMS else FDP.TYPE_MESSAGE
        assert f.type == kind, f"{f.name}: {type_name} declared with the wrong kind"
    else:
        assert f.type in SCALAR_TYPES, f"{f.name}: a scalar type the page never uses"
        type_name = SCALAR_TYPES[f.type]
    if f.label == FDP.LABEL_REPEATED:
        label = "repeated"
    else:
        assert f.label == FDP.LABEL_OPTIONAL, f"{f.name}: proto3 has no required fields"
        label = "optional" if f.proto3_optional else ""
    return Field(f.name, type_name, f.number, label)


@pytest.mark.parametrize("message", sorted(MESSAGES))
def test_protoc_message_fields_match_the_page(google_wire: GoogleWire, message: str) -> None:
    file = google_wire.files[MESSAGE_FILE[message]]
    (proto,) = [m for m in file.message_type if m.name == message]
    assert tuple(_field_from_protoc(f) for f in proto.field) == MESSAGES[message]
    # proto3 `optional` is a synthetic one-field oneof; there must be no real ones.
    optional = [f.name for f in MESSAGES[message] if f.label == "optional"]
    assert [o.name for o in proto.oneof_decl] == [f"_{name}" for name in optional]
    assert not proto.nested_type and not proto.enum_type and not proto.extension


def test_protoc_enums_match_the_page(google_wire: GoogleWire) -> None:
    file = google_wire.files[ENUM_FILE]
    found = {e.name: {v.name: v.number for v in e.value} for e in file.enum_type}
    assert found == ENUMS
    for e in file.enum_type:  # page order, too: proto3 needs the zero value first
        assert [v.name for v in e.value] == list(ENUMS[e.name])


def test_protoc_services_match_the_page(google_wire: GoogleWire) -> None:
    found = []
    for file in google_wire.files.values():
        for service in file.service:
            for m in service.method:
                assert not m.client_streaming, m.name
                found.append(
                    Method(
                        service.name,
                        m.name,
                        m.input_type.removeprefix(f".{PACKAGE}."),
                        m.output_type.removeprefix(f".{PACKAGE}."),
                        m.server_streaming,
                    )
                )
    assert found == list(METHODS)


# -- Google's runtime ------------------------------------------------------------


def test_runtime_method_paths_match_the_page(google_wire: GoogleWire) -> None:
    for m in METHODS:
        service = google_wire.pool.FindServiceByName(f"{PACKAGE}.{m.service}")
        method = service.methods_by_name[m.name]
        assert f"/{service.full_name}/{method.name}" == m.path
        assert method.input_type.name == m.request
        assert method.output_type.name == m.response
        assert method.server_streaming is m.server_streaming
        assert method.client_streaming is False
    for service_name, file in SERVICE_FILE.items():
        service = google_wire.pool.FindServiceByName(f"{PACKAGE}.{service_name}")
        assert service.file.name == file
        assert {m.name for m in service.methods} == {
            m.name for m in METHODS if m.service == service_name
        }


@pytest.mark.parametrize("message", sorted(MESSAGES))
def test_runtime_presence_is_as_the_page_says(google_wire: GoogleWire, message: str) -> None:
    # Explicit presence: proto3 `optional` scalars and every message field can
    # tell "unset" from "set to the default"; implicit scalars cannot.
    desc = google_wire.message(message)
    for f in MESSAGES[message]:
        field = desc.fields_by_name[f.name]
        expected = f.label == "optional" or (f.label == "" and f.type in MESSAGES)
        assert field.has_presence is expected, f"{message}.{f.name}"
    assert google_wire.message_class(message)().SerializeToString() == b""


# -- our generated code --------------------------------------------------------------


def _defined_in_pb(base: type) -> set[str]:
    return {
        name
        for name, value in vars(pb).items()
        if isinstance(value, type) and issubclass(value, base) and value.__module__ == pb.__name__
    }


def test_generated_module_defines_exactly_the_pages_types() -> None:
    assert _defined_in_pb(betterproto2.Message) == set(MESSAGES)
    assert _defined_in_pb(betterproto2.Enum) == set(ENUMS)
    services = set(SERVICE_FILE)
    assert _defined_in_pb(ServiceBase) == {f"{s}Base" for s in services}
    assert _defined_in_pb(ServiceStub) == {f"{s}Stub" for s in services}


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


def _field_from_generated(cls: type, field: dataclasses.Field[Any]) -> Field:
    meta = betterproto2.FieldMetadata.get(field)
    assert meta.map_meta is None and meta.group is None and meta.unwrap is None, field.name
    python_type = _python_type(typing.get_type_hints(cls)[field.name], meta)
    if meta.proto_type in PYTHON_SCALARS:
        type_name = meta.proto_type
        assert python_type is PYTHON_SCALARS[type_name], field.name
    else:
        assert meta.proto_type in (betterproto2.TYPE_ENUM, betterproto2.TYPE_MESSAGE)
        type_name = python_type.__name__
        assert getattr(pb, type_name) is python_type
        expected_kind = betterproto2.TYPE_ENUM if type_name in ENUMS else betterproto2.TYPE_MESSAGE
        assert meta.proto_type == expected_kind, field.name
    if meta.repeated:
        label = "repeated"
    elif meta.proto_type == betterproto2.TYPE_MESSAGE:
        # betterproto2 marks every message field optional: None is "unset".
        assert meta.optional, field.name
        label = ""
    else:
        label = "optional" if meta.optional else ""
    return Field(field.name, type_name, meta.number, label)


@pytest.mark.parametrize("message", sorted(MESSAGES))
def test_generated_message_fields_match_the_page(message: str) -> None:
    cls = getattr(pb, message)
    found = tuple(_field_from_generated(cls, f) for f in dataclasses.fields(cls))
    assert sorted(found, key=lambda f: f.number) == list(MESSAGES[message])
    # A fresh message holds the proto3 defaults and so encodes to nothing.
    empty = cls()
    assert bytes(empty) == b""
    for f in MESSAGES[message]:
        value = getattr(empty, f.name)
        if f.label == "repeated":
            assert value == []
        elif f.label == "optional" or f.type in MESSAGES:
            assert value is None
        elif f.type in ENUMS:
            assert value is getattr(pb, f.type)(0)
        else:
            assert value == PYTHON_SCALARS[f.type]()


def test_generated_enums_match_the_page() -> None:
    for name, values in ENUMS.items():
        enum = getattr(pb, name)
        assert {member.name: member.value for member in enum} == values, name


@pytest.mark.parametrize("service", sorted(SERVICE_FILE))
def test_generated_server_base_serves_the_pages_paths(service: str) -> None:
    mapping = getattr(pb, f"{service}Base")().__mapping__()
    found = {
        path: (handler.cardinality, handler.request_type, handler.reply_type)
        for path, handler in mapping.items()
    }
    card = grpclib.const.Cardinality
    assert found == {
        m.path: (
            card.UNARY_STREAM if m.server_streaming else card.UNARY_UNARY,
            getattr(pb, m.request),
            getattr(pb, m.response),
        )
        for m in METHODS
        if m.service == service
    }


class _Requested(Exception):
    """Raised by the recording channel in place of opening a stream."""


class _RecordingChannel:
    """Stands in for grpclib's Channel: remembers what a stub asked for, then stops it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, grpclib.const.Cardinality, type, type]] = []

    def request(
        self,
        path: str,
        cardinality: grpclib.const.Cardinality,
        request_type: type,
        reply_type: type,
        **kwargs: Any,
    ) -> Any:
        self.calls.append((path, cardinality, request_type, reply_type))
        raise _Requested(path)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.path)
def test_generated_client_stub_calls_the_pages_path(method: Method) -> None:
    channel = _RecordingChannel()
    stub = getattr(pb, f"{method.service}Stub")(channel)
    call = getattr(stub, snake_case(method.name))(getattr(pb, method.request)())
    # The stub asks the channel for a stream before its first await, so one
    # step of the coroutine (or async generator) shows the request without an
    # event loop or a server.
    step = call.__anext__() if method.server_streaming else call
    with pytest.raises(_Requested):
        step.send(None)
    card = grpclib.const.Cardinality
    assert channel.calls == [
        (
            method.path,
            card.UNARY_STREAM if method.server_streaming else card.UNARY_UNARY,
            getattr(pb, method.request),
            getattr(pb, method.response),
        )
    ]
