"""Every code example of the API reference runs as written, against every wire.

The examples are copied verbatim from the reference (flame-python-sdk-api.md);
the only change is the endpoint, which is the running server's: the embedded
cluster, and the test servers of v0.4, v0.5 and v0.6. They run in one
namespace, in an order where each finds the names it uses: ``conn`` from the
connect example, and ``session_client`` and ``task`` from the setup below,
which uses the public API only.

One example cannot do on v0.5 and v0.6 what it does on v0.4: it registers a
Shell application, a shim those wires do not have. There it raises
FlameError ``INVALID_ARGUMENT`` naming the wire, as documented, rather than
register something the cluster would misread.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from v04_server import serve_v04
from v06_server import serve_v05, serve_v06

import flame
from flame.local import ClusterConfig, LocalCluster

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

# Not from the reference: what its examples assume exists (a Log application
# on v0.4; on v0.5 and v0.6, which have no Log shim, a Host one).
SETUP = """
await conn.register_application("log-app", {"shim": Shim.LOG})
session_client = await conn.create_session(SessionAttributes(application="log-app", slots=1))
task = await session_client.create_task(b"some input")
"""
SETUP_HOST = SETUP.replace("Shim.LOG", "Shim.HOST")
# The embedded cluster runs a Host application's service, as a v0.6 cluster
# does: one of the v0.6 contract that echoes its input.
INSTANCE_SERVICE = str(Path(__file__).parents[1] / "local" / "_instance_service.py")
SETUP_SERVICE = SETUP.replace(
    '{"shim": Shim.LOG}',
    f'{{"shim": Shim.HOST, "command": {sys.executable!r}, '
    f'"arguments": [{INSTANCE_SERVICE!r}, "echo"]}}',
)


async def _run(source: str, namespace: dict[str, Any]) -> None:
    code = compile(source, "<example>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if inspect.isawaitable(result):
        await result


#: Whether the embedded cluster can be told its wire (ClusterConfig.wire).
LOCAL_WIRES = "wire" in attrs.fields_dict(ClusterConfig)


@contextlib.asynccontextmanager
async def _serving(target: str) -> AsyncIterator[str]:
    if target == "local":
        async with LocalCluster(slots=2) as cluster:
            yield cluster.endpoint
    elif target == "local-v0.6":
        if not LOCAL_WIRES:
            pytest.skip("the embedded cluster speaks v0.4 only here")
        config = ClusterConfig(wire="v0.6")  # type: ignore[call-arg, unused-ignore]
        async with LocalCluster(config, slots=2) as cluster:
            yield cluster.endpoint
    else:
        serving = {"v0.4": serve_v04, "v0.5": serve_v05, "v0.6": serve_v06}[target]()
        async with serving as server:
            yield server.endpoint


@pytest.mark.parametrize("target", ["local", "local-v0.6", "v0.4", "v0.5", "v0.6"])
async def test_the_reference_examples_run_as_written(
    target: str, anyio_backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with _serving(target) as endpoint:
        await _run_examples(endpoint, capsys, runs_services=target.startswith("local"))


async def _run_examples(
    endpoint: str, capsys: pytest.CaptureFixture[str], *, runs_services: bool
) -> None:
    namespace: dict[str, Any] = {name: getattr(flame, name) for name in flame.__all__}
    await _run(CONNECT.replace("http://localhost:8080", endpoint), namespace)
    wire = namespace["conn"].wire
    if wire == "v0.4":
        await _run(REGISTER, namespace)
    else:
        with pytest.raises(flame.FlameError) as caught:
            await _run(REGISTER, namespace)
        assert caught.value.code == flame.FlameErrorCode.INVALID_ARGUMENT
        assert "Shim.SHELL" in caught.value.message and wire in caught.value.message
    if wire == "v0.4":
        await _run(SETUP, namespace)
    else:
        await _run(SETUP_SERVICE if runs_services else SETUP_HOST, namespace)
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
