"""Services the tests start as real processes.

    python _services.py MODE [BACKEND]

MODE ``echo``: plain handlers; a task's output is its input, except for the
inputs ``fail`` (the handler raises), ``crash`` (the process dies with code
3), ``pid`` (the answer is the service's pid, to tell one process from the
next), ``context`` (the answer is the session's context, as JSON) and
``sleep <seconds>`` (the handler sleeps, then answers ``slept``). A session
whose common data is ``refuse`` is not entered (the handler raises).
MODE ``async``: the same with async handlers. MODE ``silent`` never
registers; MODE ``exit`` exits with code 4 before registering. MODE
``rogue`` first starts another process which, without the secret the
executor gave, registers itself in this one's place (MODE ``register-as``
PID), then serves as ``echo`` does. BACKEND is ``asyncio`` (the default) or
``trio``. Every step is printed on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def say(text: str) -> None:
    print(text, flush=True)


# The modes that never register speak before the SDK is imported: on a busy
# machine that import alone can outlast a short registration timeout.
if __name__ == "__main__" and sys.argv[1:2] == ["silent"]:
    say("not registering")
    time.sleep(3600)
if __name__ == "__main__" and sys.argv[1:2] == ["exit"]:
    say("giving up before registering")
    sys.exit(4)

import anyio  # noqa: E402
import attrs  # noqa: E402

from flame import FlameError  # noqa: E402
from flame._proto.v04 import flame as pb  # noqa: E402
from flame._transport import Channel  # noqa: E402
from flame.service import (  # noqa: E402
    FlameService,
    SessionContext,
    TaskContext,
    TaskOutput,
    run,
)


def enter(ctx: SessionContext) -> None:
    say(f"enter {ctx.session_id} {ctx.application.name}")
    if ctx.common_data == b"refuse":
        raise RuntimeError("the session asked to be refused")


def answer(ctx: TaskContext, session: SessionContext | None) -> bytes | None:
    data = ctx.input or b""
    say(f"task {ctx.task_id} {data.decode()}")
    if data == b"fail":
        raise ValueError("the task asked to fail")
    if data == b"crash":
        os._exit(3)
    if data == b"pid":
        return str(os.getpid()).encode()
    if data == b"context":
        if session is None:
            return b"null"
        fields = attrs.asdict(session)
        fields["application"]["shim"] = session.application.shim.name
        return json.dumps(fields, default=str).encode()
    return ctx.input


class Plain(FlameService):
    session: SessionContext | None = None

    def on_session_enter(self, ctx: SessionContext) -> None:
        self.session = ctx
        enter(ctx)

    def on_task_invoke(self, ctx: TaskContext) -> bytes | None:
        data = ctx.input or b""
        if data.startswith(b"sleep "):
            say(f"task {ctx.task_id} started")
            time.sleep(float(data.split()[1]))
            return b"slept"
        return answer(ctx, self.session)

    def on_session_leave(self) -> None:
        say("leave")


class Async(FlameService):
    session: SessionContext | None = None

    async def on_session_enter(self, ctx: SessionContext) -> None:
        self.session = ctx
        enter(ctx)

    async def on_task_invoke(self, ctx: TaskContext) -> TaskOutput:
        data = ctx.input or b""
        if data.startswith(b"sleep "):
            say(f"task {ctx.task_id} started")
            await anyio.sleep(float(data.split()[1]))
            return TaskOutput(b"slept")
        return TaskOutput(answer(ctx, self.session))

    async def on_session_leave(self) -> None:
        say("leave")


async def register_as(pid: str) -> None:
    """Register a GrpcShim that is not there under ``pid``, as another process could."""
    async with await Channel.connect(os.environ["FLAME_SERVICE_MANAGER"]) as channel:
        stub = pb.GrpcServiceManagerStub(channel)
        request = pb.RegisterServiceRequest(address="http://127.0.0.1:9", service_id=pid)
        try:
            await channel.unary(stub.register_service, request)
        except FlameError as exc:
            say(f"rogue registering as {pid}: refused: {exc.message}")
        else:
            say(f"rogue registering as {pid}: accepted")


def main() -> None:
    mode = sys.argv[1]
    backend = sys.argv[2] if len(sys.argv) > 2 else "asyncio"
    if mode == "register-as":
        anyio.run(register_as, sys.argv[2])
        return
    if mode == "rogue":
        env = {k: v for k, v in os.environ.items() if k != "FLAME_SERVICE_TOKEN"}
        argv = [sys.executable, __file__, "register-as", str(os.getpid())]
        subprocess.run(argv, env=env, check=True)
        mode = "echo"
    service = Plain() if mode == "echo" else Async()
    run(service, backend="trio" if backend == "trio" else "asyncio")
    say("stopped")


if __name__ == "__main__":
    main()
