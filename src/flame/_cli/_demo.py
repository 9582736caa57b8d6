"""``flame demo``: the options of the pi demo (it runs in flame._demo)."""

from __future__ import annotations

import argparse

import click

from .. import _demo
from .._demo import DEFAULT_SAMPLES, DEFAULT_TASKS, MAX_SAMPLES

__all__ = ["demo"]


def _positive(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and value <= 0:
        raise click.BadParameter(f"{value} is not above 0")
    return value


def _samples(ctx: click.Context, param: click.Parameter, value: int) -> int:
    _positive(ctx, param, value)
    if value > MAX_SAMPLES:
        raise click.BadParameter(f"{value} is above {MAX_SAMPLES:,}")
    return value


@click.command("demo")
@click.option(
    "--tasks",
    type=int,
    default=DEFAULT_TASKS,
    callback=_positive,
    help=f"how many tasks to run (default {DEFAULT_TASKS})",
)
@click.option(
    "--samples",
    type=int,
    default=DEFAULT_SAMPLES,
    callback=_samples,
    help=f"random points each task draws (default {DEFAULT_SAMPLES:,})",
)
@click.option(
    "--slots",
    type=int,
    default=None,
    callback=_positive,
    help="executor slots of the embedded cluster (default: the number of CPUs)",
)
@click.option(
    "--endpoint",
    default=None,
    help="use the running cluster at this address instead of starting one; it must "
    "run on this machine (it starts this Python to run the service)",
)
@click.option(
    "--backend",
    type=click.Choice(("asyncio", "trio")),
    default="asyncio",
    help="the event loop the client runs on (default asyncio)",
)
@click.option(
    "--seed", type=int, default=0, help="first random seed; task i uses seed+i (default 0)"
)
def demo(
    tasks: int, samples: int, slots: int | None, endpoint: str | None, backend: str, seed: int
) -> int:
    """Estimate pi with many tasks on an embedded (or given) cluster."""
    args = argparse.Namespace(
        tasks=tasks, samples=samples, slots=slots, endpoint=endpoint, backend=backend, seed=seed
    )
    return _demo.run(args)
