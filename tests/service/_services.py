"""Services the tests start as real processes.

    python _services.py MODE [BACKEND]

MODE ``echo``: plain handlers; a task's output is its input, except for the
inputs ``fail`` (the handler raises), ``crash`` (the process dies with code
3), ``pid`` (the answer is the service's pid, to tell one process from the
next) and ``sleep <seconds>`` (the handler sleeps, then answers ``slept``).
MODE ``async``: the same with async handlers. MODE ``silent`` never
registers; MODE ``exit`` exits with code 4 before registering. BACKEND is
``asyncio`` (the default) or ``trio``. Every step is printed on stdout.
"""

from __future__ import annotations

import os
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

from flame.service import (  # noqa: E402
    FlameService,
    SessionContext,
    TaskContext,
    TaskOutput,
    run,
)


def answer(ctx: TaskContext) -> bytes | None:
    data = ctx.input or b""
    say(f"task {ctx.task_id} {data.decode()}")
    if data == b"fail":
        raise ValueError("the task asked to fail")
    if data == b"crash":
        os._exit(3)
    if data == b"pid":
        return str(os.getpid()).encode()
    return ctx.input


class Plain(FlameService):
    def on_session_enter(self, ctx: SessionContext) -> None:
        say(f"enter {ctx.session_id} {ctx.application.name}")

    def on_task_invoke(self, ctx: TaskContext) -> bytes | None:
        data = ctx.input or b""
        if data.startswith(b"sleep "):
            say(f"task {ctx.task_id} started")
            time.sleep(float(data.split()[1]))
            return b"slept"
        return answer(ctx)

    def on_session_leave(self) -> None:
        say("leave")


class Async(FlameService):
    async def on_session_enter(self, ctx: SessionContext) -> None:
        say(f"enter {ctx.session_id} {ctx.application.name}")

    async def on_task_invoke(self, ctx: TaskContext) -> TaskOutput:
        data = ctx.input or b""
        if data.startswith(b"sleep "):
            say(f"task {ctx.task_id} started")
            await anyio.sleep(float(data.split()[1]))
            return TaskOutput(b"slept")
        return TaskOutput(answer(ctx))

    async def on_session_leave(self) -> None:
        say("leave")


def main() -> None:
    mode = sys.argv[1]
    backend = sys.argv[2] if len(sys.argv) > 2 else "asyncio"
    service = Plain() if mode == "echo" else Async()
    run(service, backend="trio" if backend == "trio" else "asyncio")
    say("stopped")


if __name__ == "__main__":
    main()
