"""The service ``flame demo`` runs: a Monte-Carlo estimate of pi, one sample batch per task.

A task's input is JSON ``{"seed": <int>, "samples": <int>}``; its output is
JSON ``{"inside": <int>, "samples": <int>}``: how many of ``samples`` random
points of the unit square fell inside the quarter circle. Four times the sum
of ``inside`` over the sum of ``samples`` estimates pi. Each task seeds its own
generator, so a run is the same on any number of executors.

Run by the Grpc shim as ``python -m flame._demo_service``.
"""

from __future__ import annotations

import json
import random

from .service import FlameService, TaskContext, run

__all__ = ["PiService", "count_inside", "decode_result", "encode_task"]

#: The largest batch one task may ask for (about a minute of one core).
MAX_SAMPLES = 200_000_000


def count_inside(seed: int, samples: int) -> int:
    """How many of ``samples`` points, drawn with ``random.Random(seed)``, fall in the circle."""
    draw = random.Random(seed).random
    inside = 0
    # The plainest loop is the fastest in pure Python (no numpy here).
    for _ in range(samples):
        x = draw()
        y = draw()
        if x * x + y * y < 1.0:
            inside += 1
    return inside


def encode_task(seed: int, samples: int) -> bytes:
    return json.dumps({"seed": seed, "samples": samples}).encode()


def decode_result(output: bytes | None) -> tuple[int, int]:
    """``(inside, samples)`` from a task's output."""
    result = json.loads(output or b"{}")
    return int(result["inside"]), int(result["samples"])


class PiService(FlameService):
    """Counts the points inside the quarter circle for each task's batch."""

    def on_task_invoke(self, ctx: TaskContext) -> bytes:
        try:
            request = json.loads(ctx.input or b"")
            seed = int(request["seed"])
            samples = int(request["samples"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f'the input must be JSON {{"seed": <int>, "samples": <int>}}, not '
                f"{(ctx.input or b'')[:100]!r} ({exc})"
            ) from None
        if not 0 < samples <= MAX_SAMPLES:
            raise ValueError(f"samples must be between 1 and {MAX_SAMPLES}, not {samples}")
        inside = count_inside(seed, samples)
        return json.dumps({"inside": inside, "samples": samples}).encode()


if __name__ == "__main__":
    run(PiService())
