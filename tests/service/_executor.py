"""A test executor of the Instance contract, doing what a Flame v0.5 or v0.6 executor does.

From the wire page (``flame-v0.6.md``, sections 7 and 10.3):

* v0.6: the socket is ``<socket dir>/<executor id>.sock``, named to the
  service by ``FLAME_INSTANCE_ENDPOINT`` (a plain path), with
  ``FLAME_ENDPOINT`` (and ``FLAME_CA_FILE`` when there is one) beside it;
  stdout and stderr go to ``<working dir>/<executor id>.out`` and ``.err``.
* v0.5: the socket is ``/tmp/flame/shim/<executor id>/fsi.sock``, the
  executor makes its directory, and the service finds its id in
  ``FLAME_EXECUTOR_ID``; stdout and stderr go to ``<cwd>/<executor id>.log``.

Both start the service in a process group of its own, wait (polling) until
the socket's file exists, call it over the socket, and at unbind drop the
channel, send SIGTERM to the process group (never SIGKILL), and remove the
socket (v0.5: and its directory).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import attrs

from flame.service._contracts._instance import InstanceWire
from flame.service._instance_client import InstanceClient

SERVICES = str(pathlib.Path(__file__).with_name("_services.py"))

#: How the lines the test services print of their steps begin.
_STEPS = ("enter ", "task ", "leave", "stopped")

#: Variables of the other contracts, which the child must not inherit.
_OTHERS = ("FLAME_SERVICE_MANAGER", "FLAME_SERVICE_TOKEN", "FLAME_INSTANCE_ENDPOINT")


@attrs.define
class Bound:
    """An executor bound to one service process: the client to it, and its process."""

    client: InstanceClient
    process: anyio.abc.Process
    socket: str
    output: pathlib.Path
    """Where the service's stdout goes."""

    def output_lines(self) -> list[str]:
        """What the service printed of its steps (v0.5 sends its log to the same file)."""
        return [line for line in self.output.read_text().splitlines() if line.startswith(_STEPS)]

    def terminate(self) -> None:
        """SIGTERM to the service's process group, as an executor unbinding does."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)

    async def wait_for_line(self, text: str) -> None:
        """Wait until the service has printed ``text`` (a hang guard bounds it)."""
        with anyio.fail_after(30):
            while text not in self.output_lines():  # noqa: ASYNC110 - a file, not an event
                await anyio.sleep(0.02)


@contextlib.asynccontextmanager
async def instance_executor(
    wire: InstanceWire,
    workdir: pathlib.Path,
    argv: list[str],
    *,
    environment: dict[str, str] | None = None,
) -> AsyncIterator[Bound]:
    """Start ``argv`` as the ``wire`` executor does, and give the bound service.

    Leaving unbinds: the channel is dropped, the process group gets
    SIGTERM, and the process is waited for (it must exit by itself).
    """
    executor_id = f"test-{uuid.uuid4().hex[:12]}"
    env = {k: v for k, v in os.environ.items() if k not in _OTHERS and k != "FLAME_EXECUTOR_ID"}
    env.update(environment or {})
    env["RUST_LOG"] = env["FLAME_LOG"] = "info"
    socket_dir, socket, output, errors = _layout(wire, executor_id, workdir, env)
    try:
        with output.open("wb") as out, contextlib.ExitStack() as stack:
            err = out if errors == output else stack.enter_context(errors.open("wb"))
            process = await anyio.open_process(
                argv, env=env, cwd=workdir, stdout=out, stderr=err, start_new_session=True
            )
        async with process:
            bound: Bound | None = None
            try:
                client = await _connect(process, socket, wire, errors)
                bound = Bound(client, process, socket, output)
                yield bound
            finally:
                if bound is not None:
                    await bound.client.aclose()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                with anyio.fail_after(30):
                    await process.wait()
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


def _layout(
    wire: InstanceWire, executor_id: str, workdir: pathlib.Path, env: dict[str, str]
) -> tuple[pathlib.Path, str, pathlib.Path, pathlib.Path]:
    """Make the socket's directory; the socket's path, the output files; set ``env``."""
    if wire == "v0.6":
        # A short directory: a socket's path may be at most 107 bytes.
        socket_dir = pathlib.Path(f"/tmp/fl-{executor_id}")
        socket_dir.mkdir(mode=0o700)
        socket = str(socket_dir / f"{executor_id}.sock")
        env["FLAME_INSTANCE_ENDPOINT"] = socket
        env.setdefault("FLAME_ENDPOINT", "http://127.0.0.1:8080")
        return socket_dir, socket, workdir / f"{executor_id}.out", workdir / f"{executor_id}.err"
    socket_dir = pathlib.Path(f"/tmp/flame/shim/{executor_id}")
    socket_dir.mkdir(parents=True, mode=0o700)
    env["FLAME_EXECUTOR_ID"] = executor_id
    log = workdir / f"{executor_id}.log"
    return socket_dir, str(socket_dir / "fsi.sock"), log, log


async def _connect(
    process: anyio.abc.Process, socket: str, wire: InstanceWire, errors: pathlib.Path
) -> InstanceClient:
    """Wait for the socket as the executor does, unless the service exits first."""
    client: InstanceClient | None = None
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:

            async def exited() -> None:
                await process.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(exited)
            client = await InstanceClient.connect(socket, wire, wait=None)
            tg.cancel_scope.cancel()
    if client is None:
        raise AssertionError(
            f"the service exited with code {process.returncode} before its socket appeared: "
            f"{_read(errors)}"
        )
    return client


def _read(path: pathlib.Path) -> str:
    return path.read_text()


def service_argv(mode: str, backend: str) -> list[str]:
    """The command line of a test service (see ``_services.py``)."""
    return [sys.executable, SERVICES, mode, backend]
