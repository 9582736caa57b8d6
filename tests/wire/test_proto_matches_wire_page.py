"""proto/<wire>/, and the code generated from it, say exactly what each wire's page says.

For every wire (v0.4, v0.5, v0.6), three witnesses are held against the page's
tables (``page_v0*``): the descriptors Google's protoc builds from
``proto/<wire>/``, the same descriptors as Google's runtime loads them, and
our committed betterproto2 code (message fields, enums, server bases and
client stubs with their gRPC paths).
"""

from __future__ import annotations

from types import ModuleType

import betterproto2
import grpclib.const
import pytest
from betterproto2.grpclib.grpclib_client import ServiceStub
from betterproto2.grpclib.grpclib_server import ServiceBase
from google.protobuf import descriptor_pb2

from .conftest import GoogleWire
from .pages import PAGES, WIRES
from .readers import FDP, PYTHON_SCALARS, generated_fields, protoc_field, without_optional_messages
from .stubs import stub_requests
from .wire_page import (
    BIDIRECTIONAL,
    SCALARS,
    SERVER_STREAMING,
    UNARY,
    Field,
    Method,
    Reserved,
    WirePage,
    snake_case,
)

STREAMING = {
    (False, False): UNARY,
    (False, True): SERVER_STREAMING,
    (True, True): BIDIRECTIONAL,
}
CARDINALITY = {
    (False, False): grpclib.const.Cardinality.UNARY_UNARY,
    (False, True): grpclib.const.Cardinality.UNARY_STREAM,
    (True, True): grpclib.const.Cardinality.STREAM_STREAM,
}

EVERY_MESSAGE = [(wire, message) for wire in WIRES for message in sorted(PAGES[wire].messages)]
EVERY_SERVICE = [(wire, service) for wire in WIRES for service in sorted(PAGES[wire].service_file)]
EVERY_METHOD = [(wire, method) for wire in WIRES for method in PAGES[wire].methods]

by_wire = pytest.mark.parametrize("wire", WIRES)
by_message = pytest.mark.parametrize("wire,message", EVERY_MESSAGE)
by_service = pytest.mark.parametrize("wire,service", EVERY_SERVICE)
by_method = pytest.mark.parametrize(
    "wire,method", EVERY_METHOD, ids=[f"{w}{m.path}" for w, m in EVERY_METHOD]
)


@by_wire
def test_the_wire_page_tables_are_self_consistent(page: WirePage) -> None:
    # Guards the data itself: a typo in a type name would otherwise only show
    # up as a confusing mismatch further down.
    known = SCALARS | page.enums.keys() | page.messages.keys()
    for message, fields in page.messages.items():
        assert len({f.number for f in fields}) == len(fields), message
        assert len({f.name for f in fields}) == len(fields), message
        for f in fields:
            assert f.type in known, f"{message}.{f.name}: unknown type {f.type}"
    for m in page.methods:
        assert m.request in page.messages and m.response in page.messages, m
    assert len(page.messages) == sum(len(t) for t in page.message_tables.values())
    assert set(page.message_tables) | set(page.service_tables) <= set(page.files)
    for message, oneofs in page.oneofs.items():
        members = [name for names in oneofs.values() for name in names]
        fields = page.fields(message)
        assert set(members) <= set(fields), message
        # A oneof member is a plain singular field in the page's notation.
        assert all(fields[name].label == "" for name in members), message
    for message, reserved in page.reserved.items():
        fields = page.fields(message)
        assert not set(reserved.numbers) & {f.number for f in fields.values()}, message
        assert not set(reserved.names) & set(fields), message


def test_the_pages_have_the_counts_the_wire_pages_state() -> None:
    # flame-v0.6.md §2: "all 29 messages and 6 enums"; §3: "all 19 messages";
    # §3: 18 Frontend methods; §10.1: v0.5's Frontend has 16.
    v06, v05 = PAGES["v0.6"], PAGES["v0.5"]
    assert len(v06.message_tables["types.proto"]) == 29 and len(v06.enums) == 6
    assert len(v06.message_tables["frontend.proto"]) == 19
    assert len(v06.service_tables["frontend.proto"]["Frontend"]) == 18
    assert len(v05.service_tables["frontend.proto"]["Frontend"]) == 16
    assert len(v06.service_tables["backend.proto"]["Backend"]) == 12
    assert len(v06.message_tables["backend.proto"]) == 18


# -- Google's protoc ---------------------------------------------------------------


@by_wire
def test_every_file_is_proto3_in_the_wires_package(google_wire: GoogleWire, page: WirePage) -> None:
    assert sorted(google_wire.files) == sorted(page.files)
    for name, file in google_wire.files.items():
        assert file.syntax == "proto3", name
        assert file.package == page.package, name
        assert tuple(file.dependency) == page.imports[name], name


@by_wire
def test_each_file_declares_exactly_the_pages_messages_enums_and_services(
    google_wire: GoogleWire, page: WirePage
) -> None:
    for name, file in google_wire.files.items():
        assert [m.name for m in file.message_type] == list(page.message_tables.get(name, {})), name
        expected_enums = list(page.enums) if name == page.enum_file else []
        assert sorted(e.name for e in file.enum_type) == sorted(expected_enums), name
        assert [s.name for s in file.service] == list(page.service_tables.get(name, {})), name


def _field_from_protoc(page: WirePage, f: descriptor_pb2.FieldDescriptorProto) -> Field:
    field = protoc_field(page.package, f)
    if field.type not in SCALARS:
        kind = FDP.TYPE_ENUM if field.type in page.enums else FDP.TYPE_MESSAGE
        assert f.type == kind, f"{f.name}: {field.type} declared with the wrong kind"
    return field


@by_message
def test_protoc_message_fields_match_the_page(
    google_wire: GoogleWire, page: WirePage, message: str
) -> None:
    proto = google_wire.message_proto(message)
    found = tuple(_field_from_protoc(page, f) for f in proto.field)
    assert found == page.messages[message]
    assert not proto.nested_type and not proto.enum_type and not proto.extension


@by_message
def test_protoc_oneofs_match_the_page(
    google_wire: GoogleWire, page: WirePage, message: str
) -> None:
    # proto3 `optional` is a synthetic one-field oneof named `_<field>`, declared
    # after the real ones; the page's oneofs are the only real ones.
    proto = google_wire.message_proto(message)
    real = page.oneofs.get(message, {})
    optional = [f.name for f in page.messages[message] if f.label == "optional"]
    assert [o.name for o in proto.oneof_decl] == [*real, *(f"_{name}" for name in optional)]
    members: dict[str, list[str]] = {o.name: [] for o in proto.oneof_decl}
    for f in proto.field:
        in_real_oneof = any(f.name in names for names in real.values())
        assert f.HasField("oneof_index") == (f.proto3_optional or in_real_oneof), f.name
        if f.HasField("oneof_index"):
            members[proto.oneof_decl[f.oneof_index].name].append(f.name)
    assert members == {**{k: list(v) for k, v in real.items()}, **{f"_{n}": [n] for n in optional}}


@by_message
def test_protoc_reserved_numbers_and_names_match_the_page(
    google_wire: GoogleWire, page: WirePage, message: str
) -> None:
    proto = google_wire.message_proto(message)
    numbers = tuple(n for r in proto.reserved_range for n in range(r.start, r.end))
    found = Reserved(numbers=numbers, names=tuple(proto.reserved_name))
    assert found == page.reserved.get(message, Reserved((), ()))


@by_wire
def test_protoc_enums_match_the_page(google_wire: GoogleWire, page: WirePage) -> None:
    file = google_wire.files[page.enum_file]
    found = {e.name: {v.name: v.number for v in e.value} for e in file.enum_type}
    assert found == page.enums
    for e in file.enum_type:  # page order, too: proto3 needs the zero value first
        assert [v.name for v in e.value] == list(page.enums[e.name])
        assert not e.reserved_range and not e.reserved_name


@by_wire
def test_protoc_services_match_the_page(google_wire: GoogleWire, page: WirePage) -> None:
    found = []
    prefix = f".{page.package}."
    for file in google_wire.files.values():
        for service in file.service:
            for m in service.method:
                # A client-streaming method with a unary reply is a kind no page has.
                streaming = STREAMING[m.client_streaming, m.server_streaming]
                assert m.input_type.startswith(prefix) and m.output_type.startswith(prefix)
                found.append(
                    Method(
                        page.package,
                        service.name,
                        m.name,
                        m.input_type.removeprefix(prefix),
                        m.output_type.removeprefix(prefix),
                        streaming,
                    )
                )
    assert found == list(page.methods)


# -- Google's runtime ------------------------------------------------------------


@by_wire
def test_runtime_method_paths_match_the_page(google_wire: GoogleWire, page: WirePage) -> None:
    for m in page.methods:
        service = google_wire.pool.FindServiceByName(f"{page.package}.{m.service}")
        method = service.methods_by_name[m.name]
        assert f"/{service.full_name}/{method.name}" == m.path
        assert method.input_type.name == m.request
        assert method.output_type.name == m.response
        assert method.server_streaming is m.server_streaming
        assert method.client_streaming is m.client_streaming
    for service_name, file in page.service_file.items():
        service = google_wire.pool.FindServiceByName(f"{page.package}.{service_name}")
        assert service.file.name == file
        assert {m.name for m in service.methods} == {
            m.name for m in page.methods if m.service == service_name
        }


@by_message
def test_runtime_presence_is_as_the_page_says(
    google_wire: GoogleWire, page: WirePage, message: str
) -> None:
    # Explicit presence: proto3 `optional` fields and every singular message
    # field can tell "unset" from "set to the default"; implicit scalars cannot.
    desc = google_wire.message(message)
    for f in page.messages[message]:
        field = desc.fields_by_name[f.name]
        expected = f.label == "optional" or (f.label == "" and f.type in page.messages)
        assert field.has_presence is expected, f"{message}.{f.name}"
    assert google_wire.message_class(message)().SerializeToString() == b""


# -- our generated code --------------------------------------------------------------


def _defined_in(pb: ModuleType, base: type) -> set[str]:
    return {
        name
        for name, value in vars(pb).items()
        if isinstance(value, type) and issubclass(value, base) and value.__module__ == pb.__name__
    }


@by_wire
def test_generated_module_defines_exactly_the_pages_types(pb: ModuleType, page: WirePage) -> None:
    assert _defined_in(pb, betterproto2.Message) == set(page.messages)
    assert _defined_in(pb, betterproto2.Enum) == set(page.enums)
    services = set(page.service_file)
    assert _defined_in(pb, ServiceBase) == {f"{s}Base" for s in services}
    assert _defined_in(pb, ServiceStub) == {f"{s}Stub" for s in services}


@by_message
def test_generated_message_fields_match_the_page(
    pb: ModuleType, page: WirePage, message: str
) -> None:
    cls = getattr(pb, message)
    found = generated_fields(pb, message)
    assert tuple(found) == without_optional_messages(page.messages[message], page.messages)
    groups = {f.name: group for f, group in found.items() if group is not None}
    oneofs = page.oneofs.get(message, {})
    assert groups == {name: oneof for oneof, names in oneofs.items() for name in names}
    # A fresh message holds the proto3 defaults and so encodes to nothing.
    empty = cls()
    assert bytes(empty) == b""
    for f in page.messages[message]:
        value = getattr(empty, f.name)
        if f.label == "repeated":
            assert value == []
        elif f.label == "optional" or f.type in page.messages:
            assert value is None
        elif f.type in page.enums:
            assert value is getattr(pb, f.type)(0)
        else:
            assert value == PYTHON_SCALARS[f.type]()


@by_wire
def test_generated_enums_match_the_page(pb: ModuleType, page: WirePage) -> None:
    for name, values in page.enums.items():
        enum = getattr(pb, name)
        assert {member.name: member.value for member in enum} == values, name


@by_service
def test_generated_server_base_serves_the_pages_paths(
    pb: ModuleType, page: WirePage, service: str
) -> None:
    mapping = getattr(pb, f"{service}Base")().__mapping__()
    found = {
        path: (handler.cardinality, handler.request_type, handler.reply_type)
        for path, handler in mapping.items()
    }
    assert found == {
        m.path: (
            CARDINALITY[m.client_streaming, m.server_streaming],
            getattr(pb, m.request),
            getattr(pb, m.response),
        )
        for m in page.methods
        if m.service == service
    }


@by_method
def test_generated_client_stub_calls_the_pages_path(pb: ModuleType, method: Method) -> None:
    request = getattr(pb, method.request)()
    # A client-streaming call takes the requests as an iterable.
    argument = [request] if method.client_streaming else request
    found = stub_requests(
        pb,
        method.service,
        snake_case(method.name),
        argument,
        streamed_reply=method.server_streaming,
    )
    assert found == [
        (
            method.path,
            CARDINALITY[method.client_streaming, method.server_streaming],
            getattr(pb, method.request),
            getattr(pb, method.response),
        )
    ]
