"""A service of the v0.6 contract for the tests: ``flame.v1.Instance`` on FLAME_INSTANCE_ENDPOINT.

    python _instance_service.py MODE

MODE ``echo`` answers every call: a task's output is its input, but for
these inputs: ``fail`` (return code 7, output ``partial``, message ``it
failed``), ``quiet-fail`` (return code 1 and nothing else), ``die`` (the
process exits with code 3, saying ``dying``), ``env`` (a JSON object of the
contract's variables and the working directory), ``common`` (the session's
common data), ``sleep:S`` (sleeps S seconds, then ``slept``). MODE
``refuse`` refuses every session; ``silent`` never listens; ``exit`` exits
at once with code 5.

With RECORD set in its environment, it appends one line per call to that
file (``enter <session id>``, ``invoke <task id>``, ``leave``), and
``sigterm`` when it is told to stop.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import anyio

from flame._proto.v06.flame import v1 as pb
from flame._transport import open_grpc_loop, serve

MODE = sys.argv[1] if len(sys.argv) > 1 else "echo"


def record(line: str) -> None:
    path = os.environ.get("RECORD")
    if path:
        with open(path, "a") as file:
            file.write(line + "\n")


class Instance(pb.InstanceBase):  # type: ignore[misc]
    def __init__(self) -> None:
        self.common: bytes | None = None

    async def on_session_enter(self, message: pb.SessionContext) -> pb.Result:
        record(f"enter {message.session_id} {message.application.name}")
        if MODE == "refuse":
            return pb.Result(return_code=-1, message="no sessions today")
        self.common = message.common_data
        return pb.Result(return_code=0)

    async def on_task_invoke(self, message: pb.TaskContext) -> pb.TaskResult:
        record(f"invoke {message.task_id}")
        data = message.input or b""
        if data == b"fail":
            return pb.TaskResult(return_code=7, output=b"partial", message="it failed")
        if data == b"quiet-fail":
            return pb.TaskResult(return_code=1)
        if data == b"die":
            print("dying", flush=True)
            os._exit(3)
        if data == b"env":
            names = ("FLAME_INSTANCE_ENDPOINT", "FLAME_ENDPOINT", "FLAME_LOG", "TMPDIR", "GREETING")
            seen: dict[str, Any] = {name: os.environ.get(name) for name in names}
            seen["cwd"] = os.getcwd()
            seen["argv"] = sys.argv[1:]
            seen["pid"] = os.getpid()
            return pb.TaskResult(return_code=0, output=json.dumps(seen).encode())
        if data == b"common":
            return pb.TaskResult(return_code=0, output=self.common)
        if data.startswith(b"sleep:"):
            await anyio.sleep(float(data[6:]))
            return pb.TaskResult(return_code=0, output=b"slept")
        return pb.TaskResult(return_code=0, output=data)

    async def on_session_leave(self, message: pb.EmptyRequest) -> pb.Result:
        record("leave")
        return pb.Result(return_code=0)


async def main() -> None:
    if MODE == "exit":
        print("not today", flush=True)
        sys.exit(5)
    if MODE == "silent":
        print("not listening", flush=True)
        await anyio.sleep(3600)
    path = os.environ["FLAME_INSTANCE_ENDPOINT"]
    loop = open_grpc_loop()
    try:
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async with serve(loop, [Instance()], path=path):
                async for _ in signals:
                    record("sigterm")
                    return
    finally:
        await loop.aclose()


if __name__ == "__main__":
    anyio.run(main)
