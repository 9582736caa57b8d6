"""What the hand codec of ``flame._wire`` costs: µs per message, against betterproto2, per wire.

For each wire (v0.4, v0.5, v0.6) it times, on the messages of one task:

* ``decode Task``: ``decode_task`` against the generated ``Task.parse``, on a
  finished task as a cluster of that wire sends it (input and output of 100
  bytes; v0.5's with the two events its server records, v0.6's with the three
  GetTask shows);
* ``encode Task``: ``encode_task`` against betterproto2's encoder, on the same
  task as a message of that wire;
* ``encode CreateTaskRequest`` and ``encode Get/WatchTaskRequest``: the
  client's requests, the same bytes on every wire.

With ``--baseline REF`` it also times the ``flame/_wire.py`` of a git ref (say
``main``) on the v0.4 messages, its only wire, to show what a change to the
codec costs the wire the SDK speaks today. Each figure is the best of
``--repeat`` runs of ``timeit`` (CPU time), all taken in the same minute.

    python benchmarks/codec.py
    python benchmarks/codec.py --baseline main

It is a script, not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import time
import timeit
import types
from collections.abc import Callable
from typing import Any

import betterproto2

import flame._wire as wire
from flame._proto.v04 import flame as v04
from flame._proto.v05 import flame as v05
from flame._proto.v06.flame import v1 as v06

ROOT = pathlib.Path(__file__).resolve().parent.parent

INPUT = bytes(range(100))
OUTPUT = bytes(reversed(range(100)))


def finished_task(pb: types.ModuleType, wire_name: str) -> Any:
    """A Succeed task as a cluster of ``wire_name`` sends it from GetTask."""
    if wire_name == "v0.4":
        status = pb.TaskStatus(
            state=pb.TaskState.Succeed, creation_time=1_780_000_000, completion_time=1_780_000_001
        )
    elif wire_name == "v0.5":
        # Seconds; an event per change of state after the task was created.
        status = pb.TaskStatus(
            state=pb.TaskState.Succeed,
            creation_time=1_780_000_000,
            completion_time=1_780_000_001,
            events=[
                pb.Event(
                    code=1, message="Running task on host node-1.", creation_time=1_780_000_000
                ),
                pb.Event(
                    code=2,
                    message="Task completed successfully on host node-1.",
                    creation_time=1_780_000_001,
                ),
            ],
        )
    else:
        # Milliseconds; an event for creation and for each change of state.
        status = pb.TaskStatus(
            state=pb.TaskState.Succeed,
            creation_time=1_780_000_000_123,
            completion_time=1_780_000_001_456,
            events=[
                pb.Event(
                    code=0,
                    message="Task was created with state <Pending>",
                    creation_time=1_780_000_000_123,
                ),
                pb.Event(
                    code=1,
                    message="Task state was updated to <Running>",
                    creation_time=1_780_000_000_200,
                ),
                pb.Event(
                    code=2,
                    message="Task was completed with state <Succeed>",
                    creation_time=1_780_000_001_456,
                ),
            ],
        )
    return pb.Task(
        metadata=pb.Metadata(id="17", name="17"),
        spec=pb.TaskSpec(session_id="flmping-a1B2c3", input=INPUT, output=OUTPUT),
        status=status,
    )


def best_us(candidates: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """The best CPU time of one call of each candidate, in µs.

    CPU time of this process, not wall time: on a machine others are busy
    on, the time spent waiting for a core is not the codec's. The candidates
    take turns, ``repeat`` rounds of about 0.2 s each, so that what remains
    of the noise (caches, frequency) falls on all of them alike.
    """
    timers = {name: timeit.Timer(fn, timer=time.process_time) for name, fn in candidates.items()}
    numbers = {name: timer.autorange()[0] for name, timer in timers.items()}
    best = dict.fromkeys(timers, float("inf"))
    for _ in range(repeat):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(numbers[name]) / numbers[name] * 1e6)
    return best


def load_baseline(ref: str) -> types.ModuleType:
    """``flame/_wire.py`` as it was at git ``ref``, reading the same v0.4 generated code."""
    source = subprocess.run(
        ["git", "show", f"{ref}:src/flame/_wire.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Before each wire had its own root, v0.4's code was flame._proto.flame;
    # it was moved, not changed.
    sys.modules.setdefault("flame._proto.flame", v04)
    name = "flame._wire_baseline"
    module = types.ModuleType(name)
    module.__package__ = "flame"
    sys.modules[name] = module
    exec(compile(source, f"{ref}:src/flame/_wire.py", "exec"), module.__dict__)
    return module


def rows(codec: types.ModuleType, pb: types.ModuleType, wire_name: str) -> dict[str, Any]:
    """Each operation of ``codec`` on ``wire_name``'s messages, beside betterproto2's."""
    task = finished_task(pb, wire_name)
    data = bytes(task)
    # The hand codec must give what the generated code gives, or its figures mean nothing.
    assert codec.encode_task(task) == data, f"{wire_name}: encode_task differs from betterproto2"
    assert codec.decode_task(data).to_pb(pb.Task) == pb.Task.parse(data), wire_name
    request = pb.CreateTaskRequest(task=pb.TaskSpec(session_id="flmping-a1B2c3", input=INPUT))
    assert codec.encode_create_task("flmping-a1B2c3", INPUT) == bytes(request)
    get = pb.GetTaskRequest(task_id="17", session_id="flmping-a1B2c3")
    assert codec.encode_task_request("17", "flmping-a1B2c3") == bytes(get)
    generic_bytes = betterproto2.Message.__bytes__
    return {
        "decode Task": (
            lambda: codec.decode_task(data),
            lambda: pb.Task.parse(data),
        ),
        "encode Task": (
            lambda: codec.encode_task(task),
            lambda: generic_bytes(task),
        ),
        "encode CreateTaskRequest": (
            lambda: codec.encode_create_task("flmping-a1B2c3", INPUT),
            lambda: bytes(
                pb.CreateTaskRequest(task=pb.TaskSpec(session_id="flmping-a1B2c3", input=INPUT))
            ),
        ),
        "encode Get/WatchTaskRequest": (
            lambda: codec.encode_task_request("17", "flmping-a1B2c3"),
            lambda: bytes(pb.GetTaskRequest(task_id="17", session_id="flmping-a1B2c3")),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per figure (best is kept)")
    parser.add_argument("--baseline", metavar="REF", help="also time flame/_wire.py of a git ref")
    args = parser.parse_args()

    baseline = load_baseline(args.baseline) if args.baseline else None
    header = f"{'wire':<5} {'operation':<28} {'hand µs':>8} {'betterproto2 µs':>16} {'ratio':>6}"
    if baseline is not None:
        header += f" {args.baseline + ' µs':>12} {'hand/' + args.baseline:>12}"
    print(f"python {sys.version.split()[0]}, best of {args.repeat}")
    print(header)
    for wire_name, pb in (("v0.4", v04), ("v0.5", v05), ("v0.6", v06)):
        old = rows(baseline, pb, wire_name) if baseline is not None and wire_name == "v0.4" else {}
        for operation, (hand, generic) in rows(wire, pb, wire_name).items():
            candidates = {"hand": hand, "generic": generic}
            if operation in old:
                candidates["baseline"] = old[operation][0]
            us = best_us(candidates, args.repeat)
            line = (
                f"{wire_name:<5} {operation:<28} {us['hand']:>8.2f} {us['generic']:>16.2f} "
                f"{us['generic'] / us['hand']:>5.1f}x"
            )
            if "baseline" in us:
                line += f" {us['baseline']:>12.2f} {us['hand'] / us['baseline']:>12.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
