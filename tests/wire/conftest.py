"""Google's protobuf runtime, built from proto/<wire>/ once per wire and test session.

Tests that take ``wire`` (parametrized over the wires) get that wire's
``page``, ``pb`` (our generated module) and ``google_wire``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

from .pages import PAGES, generated
from .wire_page import ROOT, WirePage

__all__ = ["ROOT", "GoogleWire"]


@dataclass(frozen=True)
class GoogleWire:
    """What ``protoc`` makes of one wire's proto/ files: raw file descriptors, and live classes."""

    page: WirePage
    files: dict[str, descriptor_pb2.FileDescriptorProto]
    pool: descriptor_pool.DescriptorPool

    def message(self, name: str) -> descriptor.Descriptor:
        return self.pool.FindMessageTypeByName(f"{self.page.package}.{name}")

    def message_class(self, name: str) -> Any:
        return _message_class(self.message(name))

    def message_names(self) -> set[str]:
        return {m.name for f in self.files.values() for m in f.message_type}

    def message_proto(self, name: str) -> descriptor_pb2.DescriptorProto:
        (proto,) = [
            m for m in self.files[self.page.message_file[name]].message_type if m.name == name
        ]
        return proto


def _message_class(desc: descriptor.Descriptor) -> Any:
    get = getattr(message_factory, "GetMessageClass", None)
    if get is not None:
        return get(desc)
    # protobuf < 4.22 only had the factory object.
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


def compile_descriptor_set(page: WirePage, out: pathlib.Path) -> descriptor_pb2.FileDescriptorSet:
    """Run Google's protoc (from grpcio-tools) over one wire's proto/ and read what it built."""
    target = out / "flame.pb"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{page.proto_dir}",
            f"--descriptor_set_out={target}",
            "--include_imports",
            *(str(page.proto_dir / name) for name in page.files),
        ]
    )
    assert code == 0, f"protoc failed on {page.proto_dir} (exit {code}); its errors are above"
    return descriptor_pb2.FileDescriptorSet.FromString(target.read_bytes())


@pytest.fixture(scope="session")
def google_wires(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], GoogleWire]:
    """Google's view of a wire, built the first time a test asks for it."""
    built: dict[str, GoogleWire] = {}

    def get(wire: str) -> GoogleWire:
        if wire not in built:
            page = PAGES[wire]
            fds = compile_descriptor_set(page, tmp_path_factory.mktemp(f"protoc-{wire}"))
            # A private pool per wire: v0.4 and v0.5 both define package `flame`,
            # and nothing here touches the process-wide default pool.
            pool = descriptor_pool.DescriptorPool()
            for file in fds.file:  # protoc lists dependencies before their users
                pool.Add(file)
            built[wire] = GoogleWire(page=page, files={f.name: f for f in fds.file}, pool=pool)
        return built[wire]

    return get


@pytest.fixture
def page(wire: str) -> WirePage:
    return PAGES[wire]


@pytest.fixture
def pb(wire: str) -> ModuleType:
    return generated(wire)


@pytest.fixture
def google_wire(google_wires: Callable[[str], GoogleWire], wire: str) -> GoogleWire:
    return google_wires(wire)
