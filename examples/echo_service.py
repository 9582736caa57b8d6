"""A Flame service: each task's output is its input.

An executor starts this program and calls it (the Grpc shim of Flame v0.4 and
``flame local``, or the Host shim of v0.5 and v0.6); it is not run by hand.
``echo_client.py`` registers it and runs tasks in it.
"""

from __future__ import annotations

from flame.service import FlameService, SessionContext, TaskContext, run


class EchoService(FlameService):
    def on_session_enter(self, ctx: SessionContext) -> None:
        # Printed lines go to the cluster's log, prefixed by application and pid.
        print(f"entered session {ctx.session_id} of {ctx.application.name}")

    def on_task_invoke(self, ctx: TaskContext) -> bytes | None:
        return ctx.input

    def on_session_leave(self) -> None:
        print("left the session")


if __name__ == "__main__":
    run(EchoService())
