"""Estimate pi with many tasks running at once in the pi service.

    python examples/pi_client.py                        # on an embedded cluster
    python examples/pi_client.py --tasks 500 --backend trio
    python examples/pi_client.py --endpoint URL         # on a running cluster

A running cluster must be on this machine (``flame local``, say): it starts
``pi_service.py`` with this Python.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import anyio

import flame
from flame.local import LocalCluster

SERVICE = pathlib.Path(__file__).with_name("pi_service.py").resolve()


async def estimate(address: str, tasks: int, samples: int) -> float:
    async with await flame.connect(address) as conn:
        await conn.register_application(
            "pi",
            flame.ApplicationAttributes(
                shim=flame.Shim.GRPC, command=sys.executable, arguments=[str(SERVICE)]
            ),
        )
        attrs = flame.SessionAttributes(
            application="pi", slots=1, common_data=json.dumps({"samples": samples}).encode()
        )
        inside = 0
        limit = anyio.Semaphore(64)  # tasks in flight at once

        async def one(seed: int) -> None:
            nonlocal inside
            async with limit:
                task = await session.run_task(str(seed).encode())
            inside += int(task.output or b"0")

        # The tasks run at once, spread over the cluster's executors.
        async with await conn.create_session(attrs) as session, anyio.create_task_group() as tg:
            for seed in range(tasks):
                tg.start_soon(one, seed)
        await conn.unregister_application("pi")
    return 4.0 * inside / (tasks * samples)


async def main(args: argparse.Namespace) -> None:
    if args.endpoint is not None:
        pi = await estimate(args.endpoint, args.tasks, args.samples)
    else:
        async with LocalCluster() as cluster:
            pi = await estimate(cluster.endpoint, args.tasks, args.samples)
    print(f"pi ~= {pi:.6f} (error {abs(pi - math.pi):.6f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", help="a running cluster (default: start one here)")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--samples", type=int, default=100_000, help="points per task")
    args = parser.parse_args()
    anyio.run(main, args, backend=args.backend)
