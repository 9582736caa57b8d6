"""The committed src/flame/_proto/<root> of each wire is exactly what proto/<wire> generates.

The test runs the same generation as ``nox -s proto`` (options, wires and
file lists are read from noxfile.py, so the two cannot disagree) into a
temporary directory and compares every file byte for byte. When it fails,
regenerate with ``nox -s proto -- --write`` and commit the result.
"""

from __future__ import annotations

import ast
import difflib
import importlib.metadata
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any

import pytest

from .conftest import ROOT

GENERATED = ROOT / "src" / "flame" / "_proto"
PLUGIN = "protoc-gen-python_betterproto2"


def _noxfile_constants() -> dict[str, Any]:
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    wanted = {"PROTO_WIRES", "PLUGIN_OPTIONS", "PROTO_TOOLS"}
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in wanted:
                found[target.id] = ast.literal_eval(node.value)
    assert found.keys() == wanted, f"noxfile.py no longer defines {wanted - found.keys()}"
    return found


def _files(root: pathlib.Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def _describe(name: str, fresh: bytes | None, committed: bytes | None) -> str:
    if fresh is None:
        return f"{name}: committed, but proto/ does not generate it"
    if committed is None:
        return f"{name}: generated from proto/, but not committed"
    diff = difflib.unified_diff(
        committed.decode(errors="replace").splitlines(),
        fresh.decode(errors="replace").splitlines(),
        f"committed/{name}",
        f"generated/{name}",
        lineterm="",
    )
    return "\n".join(list(diff)[:40])


def test_every_wire_has_its_own_generated_root() -> None:
    wires = _noxfile_constants()["PROTO_WIRES"]
    assert sorted(wires) == ["v0.4", "v0.5", "v0.6"]
    roots = [root for root, _ in wires.values()]
    assert len(set(roots)) == len(roots)
    hand_written = {"__init__.py"}  # explains the layout; everything else is generated
    found = {p.name for p in GENERATED.iterdir() if p.name != "__pycache__"}
    assert found == set(roots) | hand_written


@pytest.mark.parametrize("wire", ["v0.4", "v0.5", "v0.6"])
def test_committed_generated_code_matches_proto(tmp_path: pathlib.Path, wire: str) -> None:
    if importlib.util.find_spec("betterproto2_compiler") is None:
        pytest.skip("betterproto2_compiler is not installed (pip install -e '.[test]')")
    constants = _noxfile_constants()
    pins = dict(tool.split("==") for tool in constants["PROTO_TOOLS"])
    installed = importlib.metadata.version("betterproto2-compiler")
    assert installed == pins["betterproto2-compiler"], (
        f"betterproto2-compiler {installed} is installed, but the generated code is pinned "
        f"to {pins['betterproto2-compiler']}; install the test extra: pip install -e '.[test]'"
    )

    bindir = os.path.dirname(sys.executable)
    path = bindir + os.pathsep + os.environ.get("PATH", "")
    assert shutil.which(PLUGIN, path=path), f"{PLUGIN} not found next to {sys.executable}"
    root, files = constants["PROTO_WIRES"][wire]
    source = ROOT / "proto" / wire
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{source}",
            f"--python_betterproto2_out={tmp_path}",
            f"--python_betterproto2_opt={constants['PLUGIN_OPTIONS']}",
            *(str(source / name) for name in files),
        ],
        # The plugin formats its output with the `ruff` it finds on PATH, and
        # ruff reads its settings from the working directory: the project's.
        cwd=ROOT,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"protoc with {PLUGIN} failed:\n{result.stderr}"

    fresh, committed = _files(tmp_path), _files(GENERATED / root)
    assert fresh, "the plugin wrote nothing"
    drift = [
        _describe(name, fresh.get(name), committed.get(name))
        for name in sorted(fresh.keys() | committed.keys())
        if fresh.get(name) != committed.get(name)
    ]
    assert not drift, (
        f"src/flame/_proto/{root} differs from what proto/{wire} generates "
        f"(formatted by {_ruff_version(path)}); "
        "run `nox -s proto -- --write` and commit:\n" + "\n".join(drift)
    )


def _ruff_version(path: str) -> str:
    ruff = shutil.which("ruff", path=path)
    if ruff is None:
        return "no ruff on PATH"
    return subprocess.run([ruff, "--version"], capture_output=True, text=True).stdout.strip()
