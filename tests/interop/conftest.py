"""The official clients against ``flame local``: a cluster in its own process, as a user runs it.

These tests need ``flamepy`` from PyPI, which brings grpcio, protobuf and
(0.6.0) pyarrow, pymongo, fastapi and more: ``nox -s interop`` installs
each version in a session of its own. Without it they are skipped.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The services of the tests import flamepy and these helpers from here.
HERE = Path(__file__).parent


def flamepy_version() -> str | None:
    try:
        return importlib.metadata.version("flamepy")
    except importlib.metadata.PackageNotFoundError:
        return None


def needs_flamepy(version: str) -> pytest.MarkDecorator:
    """Skip unless flamepy ``version`` is installed, saying how to run these tests."""
    installed = flamepy_version()
    return pytest.mark.skipif(
        installed != version,
        reason=f"flamepy {version} is not installed (found: {installed or 'none'}); "
        f"run `nox -s interop` to test against it",
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def flame_local(*options: str) -> Iterator[str]:
    """Run ``flame local OPTIONS`` on a free port until the test ends; its endpoint."""
    endpoint = f"http://127.0.0.1:{_free_port()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "flame.local", "--endpoint", endpoint, *options],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "serving on" not in line:
            raise RuntimeError(f"flame local did not start: {line!r}")
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def service_environment() -> dict[str, str]:
    """What a service started by the cluster needs to import flamepy and the test helpers."""
    return {"PYTHONPATH": os.pathsep.join([str(HERE), *(p for p in sys.path if p)])}
