"""The API reference's examples, without ``await``, run on the blocking API.

The examples are those of tests/client/test_seed_examples.py (copied from
the reference), with ``await`` and the ``async`` of ``async for`` taken out
and nothing else changed but the endpoint. They run in one namespace made
of ``flame.sync``'s names: ``import flame.sync as flame`` is all a program
needs to change.
"""

from __future__ import annotations

from typing import Any

import pytest
from client import test_seed_examples as seed

import flame.sync
from flame.local import LocalCluster


def _blocking(source: str) -> str:
    return source.replace("async for ", "for ").replace("await ", "")


def test_the_reference_examples_run_without_await(
    cluster: LocalCluster, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace: dict[str, Any] = {name: getattr(flame.sync, name) for name in flame.sync.__all__}
    connect = seed.CONNECT.replace("http://localhost:8080", cluster.endpoint)
    if backend != "asyncio":
        # The one thing the reference cannot say: another event loop than the default.
        connect = connect.replace('.connect("', f'.connect(backend="{backend}", addr="')
    for example in (connect, seed.REGISTER, seed.SETUP, seed.INFORMER, seed.WATCHER):
        exec(compile(_blocking(example), "<example>", "exec"), namespace)
    conn = namespace["conn"]
    assert isinstance(conn, flame.sync.Connection) and conn.backend == backend
    exec(compile(_blocking(seed.CLOSE), "<example>", "exec"), namespace)
    exec(compile(_blocking(seed.ERRORS), "<example>", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    informed = [line for line in printed if line.startswith("Task 2:")]
    watched = [line for line in printed if line.startswith("Task state:")]
    assert informed[0] == "Task 2: PENDING" and informed[-1] == "Task 2: SUCCEED"
    assert watched[-1] == "Task state: SUCCEED"
    assert not any(line.startswith("Error:") for line in printed)
    assert printed[-1] == (
        "Configuration error: endpoint 'invalid://address' has scheme 'invalid'; "
        "use 'http://host:port', or 'https://host:port' for TLS"
    )
    assert namespace["conn"] is conn  # the failed connect left it untouched
    with pytest.raises(flame.sync.FlameError):
        conn.list_sessions()  # closed by the close example
