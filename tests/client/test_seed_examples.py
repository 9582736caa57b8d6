"""Every code example of the API reference runs as written against an embedded cluster.

The examples are copied verbatim from the reference (flame-python-sdk-api.md);
the only change is the endpoint, which is the running cluster's. They run in
one namespace, in an order where each finds the names it uses: ``conn`` from
the connect example, and ``session_client`` and ``task`` from the setup
below, which uses the public API only.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any

import pytest

import flame
from flame.local import LocalCluster

CONNECT = """
conn = await Connection.connect("http://localhost:8080")
"""

REGISTER = """
await conn.register_application("my-app", {
    "shim": Shim.SHELL,
    "command": "python",
    "arguments": ["script.py"]
})
"""

INFORMER = """
class MyTaskInformer(TaskInformer):
    def on_update(self, task):
        print(f"Task {task.id}: {task.state}")

    def on_error(self, error):
        print(f"Error: {error}")

informer = MyTaskInformer()
await session_client.run_task(b"input data", informer)
"""

WATCHER = """
async for update in session_client.watch_task(task.id):
    print(f"Task state: {update.state}")
    if update.is_completed():
        break
"""

CLOSE = """
await conn.close()
"""

ERRORS = """
try:
    conn = await Connection.connect("invalid://address")
except FlameError as e:
    if e.code == FlameErrorCode.INVALID_CONFIG:
        print(f"Configuration error: {e.message}")
"""

# Not from the reference: what its examples assume exists.
SETUP = """
await conn.register_application("log-app", {"shim": Shim.LOG})
session_client = await conn.create_session(SessionAttributes(application="log-app", slots=1))
task = await session_client.create_task(b"some input")
"""


async def _run(source: str, namespace: dict[str, Any]) -> None:
    code = compile(source, "<example>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if inspect.isawaitable(result):
        await result


async def test_the_reference_examples_run_as_written(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace: dict[str, Any] = {name: getattr(flame, name) for name in flame.__all__}
    await _run(CONNECT.replace("http://localhost:8080", cluster.endpoint), namespace)
    await _run(REGISTER, namespace)
    await _run(SETUP, namespace)
    await _run(INFORMER, namespace)
    await _run(WATCHER, namespace)
    conn = namespace["conn"]
    await _run(CLOSE, namespace)
    await _run(ERRORS, namespace)
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
    with pytest.raises(flame.FlameError):
        await conn.list_sessions()  # closed by the close example
