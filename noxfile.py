"""The project's test matrix: ``nox`` runs every session, ``nox -s tests`` the tests.

Sessions use the interpreter nox itself runs on, so a machine never fails for
want of a Python version it lacks; ``nox -s tests --python 3.12`` (or
``FLAME_NOX_PYTHONS="3.10 3.12"``) runs the tests on others where present.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import nox

nox.options.sessions = ["lint", "typecheck", "proto", "tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = pathlib.Path(__file__).parent
# Each Flame wire the SDK speaks: its .proto files, read from proto/<wire>/, and
# the root under src/flame/_proto/ its code is generated into. v0.4 and v0.5
# share the protobuf package `flame`, so each wire needs a root of its own.
PROTO_WIRES = {
    "v0.4": ("v04", ["types.proto", "frontend.proto", "shim.proto"]),
    "v0.5": ("v05", ["types.proto", "frontend.proto", "backend.proto", "shim.proto"]),
    "v0.6": ("v06", ["types.proto", "frontend.proto", "backend.proto", "shim.proto"]),
}
GENERATED = ROOT / "src" / "flame" / "_proto"

# Pinned so that the committed generated code is reproducible.
# ruff too: the compiler formats its output with whatever ruff it finds.
PROTO_TOOLS = ["betterproto2-compiler==0.10.1", "grpcio-tools==1.85.1", "ruff==0.17.6"]
PLUGIN_OPTIONS = "client_generation=async,server_generation=async"

_pythons = os.environ.get("FLAME_NOX_PYTHONS", "").split() or None


@nox.session(python=_pythons)
def tests(session: nox.Session) -> None:
    """pytest with anyio's plugin; every async test runs on asyncio and on trio."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/ (generated code is excluded)."""
    session.install("-e", ".[test]", "mypy==2.4.1", "types-PyYAML", "uvloop")
    session.run("mypy")


def generate(session: nox.Session, wire: str, out: pathlib.Path) -> None:
    bindir = pathlib.Path(session.bin)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    source = ROOT / "proto" / wire
    _, files = PROTO_WIRES[wire]
    session.run(
        "python",
        "-m",
        "grpc_tools.protoc",
        f"-I{source}",
        f"--python_betterproto2_out={out}",
        f"--python_betterproto2_opt={PLUGIN_OPTIONS}",
        *[str(source / name) for name in files],
        env=env,
    )


@nox.session
def proto(session: nox.Session) -> None:
    """Regenerate src/flame/_proto/<root> from proto/<wire> for every wire; fail on drift.

    ``nox -s proto -- --write`` rewrites the committed code instead.
    """
    session.install(*PROTO_TOOLS)
    drift = []
    for wire, (root, _) in PROTO_WIRES.items():
        committed = GENERATED / root
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp)
            generate(session, wire, out)
            if "--write" in session.posargs:
                shutil.rmtree(committed, ignore_errors=True)
                shutil.copytree(out, committed)
                session.log(f"wrote {committed}")
                continue
            drift += [f"{root}/{name}" for name in _compare(out, committed)]
    if drift:
        session.error("generated code differs from proto/: " + ", ".join(drift))
    if "--write" not in session.posargs:
        session.log("generated code matches proto/")


def _compare(fresh: pathlib.Path, committed: pathlib.Path) -> list[str]:
    def files(root: pathlib.Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    a, b = files(fresh), files(committed)
    return sorted(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))
