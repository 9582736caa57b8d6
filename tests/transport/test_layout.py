"""Who knows grpclib: the server side alone.

A client's calls go over the SDK's own HTTP/2 connection; grpclib serves
(the embedded cluster, the service runtime, the Grpc shim's manager). So no
client module names it, and importing the SDK does not load grpclib's client.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import flame

ROOT = Path(flame.__file__).parent

#: The modules that may name grpclib: the server and where it runs, and the
#: embedded cluster that serves through them. (Generated code aside.)
SERVER_SIDE = {
    "_transport/_server.py",
    "_transport/_edge.py",
    "_transport/_loop.py",
    "local/_cluster.py",
    "local/shims/grpc.py",
    "service/_runtime.py",
}


def test_grpclib_is_named_by_server_side_modules_only() -> None:
    naming = {
        path.relative_to(ROOT).as_posix()
        for path in ROOT.rglob("*.py")
        if "_proto" not in path.relative_to(ROOT).parts and "grpclib" in path.read_text()
    }
    assert naming <= SERVER_SIDE, sorted(naming - SERVER_SIDE)
    assert "_transport/_server.py" in naming  # the search does see what it looks for


def test_importing_the_sdk_loads_no_grpc_client() -> None:
    code = (
        "import sys, flame, flame.local, flame.service; "
        "print(sorted(m for m in sys.modules if m.startswith('grpclib.client')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
