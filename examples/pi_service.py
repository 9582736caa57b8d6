"""A Flame service that estimates pi by Monte-Carlo, one batch of points per task.

The session's common data says how many points a task draws
(``{"samples": 100000}``); each task's input is a random seed, and its output
the number of points that fell inside the quarter circle. ``pi_client.py``
runs it. An executor starts this program; it is not run by hand.
"""

from __future__ import annotations

import json
import random

from flame.service import FlameService, SessionContext, TaskContext, run


class PiService(FlameService):
    def __init__(self) -> None:
        self.samples = 0

    def on_session_enter(self, ctx: SessionContext) -> None:
        self.samples = int(json.loads(ctx.common_data or b"{}").get("samples", 100_000))

    def on_task_invoke(self, ctx: TaskContext) -> bytes:
        # A plain handler runs in a worker thread: the service keeps answering
        # the executor while it computes.
        draw = random.Random(int(ctx.input or b"0")).random
        inside = 0
        for _ in range(self.samples):
            x, y = draw(), draw()
            if x * x + y * y < 1.0:
                inside += 1
        return str(inside).encode()


if __name__ == "__main__":
    run(PiService())
