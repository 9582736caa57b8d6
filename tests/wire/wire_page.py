"""How a Flame wire page is written out as data: the notation the ``page_v0*`` modules share.

Each page module (``page_v04``, ``page_v05``, ``page_v06``) writes one wire's
tables by hand, field lists in the page's own ``[optional|repeated] name: type
= number`` notation, so a reader can hold one against the other line by line.
The tests check ``proto/<wire>/``, the descriptors Google's ``protoc`` builds
from it and the committed generated code against these facts; they are the
single statement of each contract in the repo.
"""

from __future__ import annotations

import pathlib
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, NamedTuple

ROOT = pathlib.Path(__file__).resolve().parents[2]

SCALARS = frozenset({"string", "bytes", "int32", "int64", "uint32", "uint64"})

# How a method streams, in the page's words: "unary", a "server streaming"
# reply, or "bidirectional" (a stream both ways).
Streaming = Literal["unary", "server streaming", "bidirectional"]
UNARY: Streaming = "unary"
SERVER_STREAMING: Streaming = "server streaming"
BIDIRECTIONAL: Streaming = "bidirectional"


class Field(NamedTuple):
    name: str
    type: str  # a scalar of SCALARS, or the name of an enum or message of the package
    number: int
    label: str  # "" (proto3 implicit presence), "optional" or "repeated"


class Method(NamedTuple):
    package: str
    service: str
    name: str
    request: str
    response: str
    streaming: Streaming

    @property
    def path(self) -> str:
        """The HTTP/2 path a gRPC call of this method goes to."""
        return f"/{self.package}.{self.service}/{self.name}"

    @property
    def client_streaming(self) -> bool:
        return self.streaming == BIDIRECTIONAL

    @property
    def server_streaming(self) -> bool:
        return self.streaming != UNARY


class Reserved(NamedTuple):
    numbers: tuple[int, ...]
    names: tuple[str, ...]


# A service table's row: (method, request, response, streaming).
MethodRow = tuple[str, str, str, Streaming]


@dataclass(frozen=True)
class WirePage:
    """One wire's page, as data: files, enums, messages, services."""

    wire: str  # "v0.4", "v0.5", "v0.6"
    package: str
    generated: str  # the module the wire's code is generated into
    files: tuple[str, ...]
    imports: dict[str, tuple[str, ...]]
    enums: dict[str, dict[str, int]]
    # file -> message -> fields, in the page's notation, in the page's order
    message_tables: dict[str, dict[str, str]]
    # file -> service -> rows
    service_tables: dict[str, dict[str, list[MethodRow]]]
    # message -> what it reserves; a message not listed reserves nothing
    reserved: dict[str, Reserved] = field(default_factory=dict)
    # message -> oneof name -> its fields (proto3 `optional` is not listed here)
    oneofs: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    enum_file: str = "types.proto"

    @property
    def proto_dir(self) -> pathlib.Path:
        return ROOT / "proto" / self.wire

    @cached_property
    def messages(self) -> dict[str, tuple[Field, ...]]:
        return {
            name: parse_fields(text)
            for table in self.message_tables.values()
            for name, text in table.items()
        }

    @cached_property
    def message_file(self) -> dict[str, str]:
        return {name: file for file, table in self.message_tables.items() for name in table}

    @cached_property
    def methods(self) -> tuple[Method, ...]:
        return tuple(
            Method(self.package, service, *row)
            for services in self.service_tables.values()
            for service, rows in services.items()
            for row in rows
        )

    @cached_property
    def service_file(self) -> dict[str, str]:
        return {
            service: file for file, services in self.service_tables.items() for service in services
        }

    def fields(self, message: str) -> dict[str, Field]:
        """The fields of ``message`` by name."""
        return {f.name: f for f in self.messages[message]}


_FIELD = re.compile(r"^(?:(optional|repeated) )?(\w+): (\w+) = (\d+)$")


def parse_fields(text: str) -> tuple[Field, ...]:
    """``"id: string = 1; optional owner: string = 3"`` -> its Fields, in order."""
    fields = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        match = _FIELD.match(part)
        if match is None:
            raise ValueError(f"cannot read field {part!r}")
        label, name, type_, number = match.groups()
        fields.append(Field(name, type_, int(number), label or ""))
    return tuple(fields)


def snake_case(name: str) -> str:
    """``CreateTask`` -> ``create_task``: how the generated code names a method."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
