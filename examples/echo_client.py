"""Run a few tasks in the echo service.

    python examples/echo_client.py                     # on an embedded cluster
    python examples/echo_client.py --endpoint URL      # on a running cluster

A running cluster must be on this machine (``flame local``, say): it starts
``echo_service.py`` with this Python.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import sys
from collections.abc import AsyncIterator

import anyio

import flame
from flame.local import LocalCluster

SERVICE = pathlib.Path(__file__).with_name("echo_service.py").resolve()


@contextlib.asynccontextmanager
async def cluster_endpoint(endpoint: str | None) -> AsyncIterator[str]:
    """``endpoint`` if given; otherwise that of an embedded cluster, for the ``async with``."""
    if endpoint is not None:
        yield endpoint
        return
    async with LocalCluster(slots=2) as cluster:
        yield cluster.endpoint


async def main(endpoint: str | None, words: list[str]) -> None:
    async with cluster_endpoint(endpoint) as address, await flame.connect(address) as conn:
        await conn.register_application(
            "echo",
            flame.ApplicationAttributes(
                shim=flame.Shim.GRPC, command=sys.executable, arguments=[str(SERVICE)]
            ),
        )
        attrs = flame.SessionAttributes(application="echo", slots=1)
        async with await conn.create_session(attrs) as session:
            for word in words:
                task = await session.run_task(word.encode())
                print(f"task {task.id}: {task.state.name} {task.output!r}")
        await conn.unregister_application("echo")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", help="a running cluster (default: start one here)")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("words", nargs="*", default=["hello", "from", "flame"])
    args = parser.parse_args()
    anyio.run(main, args.endpoint, args.words, backend=args.backend)
