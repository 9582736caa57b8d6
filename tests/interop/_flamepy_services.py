"""Services written with flamepy 0.6.0's service runtime, run by the cluster as Host applications.

    python _flamepy_services.py core       # flamepy.FlameService, run by flamepy.run
    python _flamepy_services.py instance   # flamepy.service.FlameInstance and its entrypoint

``core`` answers a task with its input, but ``common`` (the session's common
data), ``fail`` (raises, so the task fails with the exception's text) and
``pid``. ``instance`` adds one to the number it is given (cloudpickled both
ways, as FlameInstance does).
"""

from __future__ import annotations

import os
import sys

import flamepy
from flamepy.service import FlameInstance


class Echo(flamepy.FlameService):
    def __init__(self) -> None:
        self.common: bytes | None = None

    def on_session_enter(self, context: flamepy.SessionContext) -> None:
        self.common = context.common_data()

    def on_task_invoke(self, context: flamepy.TaskContext) -> bytes | None:
        if context.input == b"fail":
            raise ValueError("asked to fail")
        if context.input == b"common":
            return self.common
        if context.input == b"pid":
            return str(os.getpid()).encode()
        return context.input

    def on_session_leave(self) -> None:
        self.common = None


def instance() -> None:
    service = FlameInstance()

    @service.entrypoint
    def add_one(number: int) -> int:
        return number + 1

    service.run()


if __name__ == "__main__":
    if sys.argv[1] == "core":
        flamepy.run(Echo())
    else:
        instance()
