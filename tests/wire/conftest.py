"""Google's protobuf runtime, built from proto/ once per test session."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

from .wire_page import FILES, PACKAGE

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto" / "v0.4"


@dataclass(frozen=True)
class GoogleWire:
    """What ``protoc`` makes of proto/: raw file descriptors, and live classes."""

    files: dict[str, descriptor_pb2.FileDescriptorProto]
    pool: descriptor_pool.DescriptorPool

    def message(self, name: str) -> descriptor.Descriptor:
        return self.pool.FindMessageTypeByName(f"{PACKAGE}.{name}")

    def message_class(self, name: str) -> Any:
        return _message_class(self.message(name))

    def message_names(self) -> set[str]:
        return {m.name for f in self.files.values() for m in f.message_type}


def _message_class(desc: descriptor.Descriptor) -> Any:
    get = getattr(message_factory, "GetMessageClass", None)
    if get is not None:
        return get(desc)
    # protobuf < 4.22 only had the factory object.
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


def compile_descriptor_set(out: pathlib.Path) -> descriptor_pb2.FileDescriptorSet:
    """Run Google's protoc (from grpcio-tools) over proto/ and read what it built."""
    target = out / "flame.pb"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--descriptor_set_out={target}",
            "--include_imports",
            *(str(PROTO_DIR / name) for name in FILES),
        ]
    )
    assert code == 0, f"protoc failed on proto/ (exit {code}); its errors are above"
    return descriptor_pb2.FileDescriptorSet.FromString(target.read_bytes())


@pytest.fixture(scope="session")
def google_wire(tmp_path_factory: pytest.TempPathFactory) -> GoogleWire:
    fds = compile_descriptor_set(tmp_path_factory.mktemp("protoc"))
    # A private pool: nothing here touches the process-wide default pool.
    pool = descriptor_pool.DescriptorPool()
    for file in fds.file:  # protoc lists dependencies before their users
        pool.Add(file)
    return GoogleWire(files={f.name: f for f in fds.file}, pool=pool)
