"""``flame local``: the options of the embedded cluster's command (it runs in flame.local)."""

from __future__ import annotations

import os
from typing import Any

import click

from ..local._command import DEFAULT_ENDPOINT, LEVELS, LocalOptions, run
from ..local._config import WIRES

__all__ = ["local"]


@click.command("local")
@click.option(
    "--wire",
    default=None,
    type=click.Choice(WIRES),
    help="the Flame wire to speak, as one Flame cluster speaks one: v0.4 (flame.Frontend; "
    "Log, Stdio, Shell and Grpc applications) or v0.6 (flame.v1.Frontend; Host "
    "applications, through v0.6's service contract). Default: the config's `wire`, "
    "else v0.4",
)
@click.option(
    "--endpoint",
    default=None,
    help=f"where to serve (default: the config's endpoint, else {DEFAULT_ENDPOINT})",
)
@click.option(
    "--config",
    default=None,
    metavar="PATH",
    help="a flame-conf.yaml; its applications are registered at start",
)
@click.option(
    "--slots",
    type=int,
    default=None,
    help=f"executor slots (default: the number of CPUs, {os.cpu_count() or 1} here)",
)
@click.option(
    "--tls-cert",
    default=None,
    metavar="PATH",
    help="serve https with this certificate (PEM; with --tls-key; overrides the config's tls)",
)
@click.option("--tls-key", default=None, metavar="PATH", help="the private key of --tls-cert (PEM)")
@click.option(
    "--retention-max-age",
    default=None,
    metavar="DURATION",
    help="delete closed sessions and their tasks this long after closing (90s, 15m, 2h, 7d)",
)
@click.option(
    "--retention-max-closed",
    type=int,
    default=None,
    metavar="N",
    help="keep at most N closed sessions (with their tasks); the oldest go first",
)
@click.option(
    "--max-message-bytes",
    type=int,
    default=None,
    metavar="N",
    help="the largest request (task input, common data) and task output, in bytes "
    "(default: 4 MiB); clients must be given the same",
)
@click.option(
    "--idle-timeout",
    default=None,
    metavar="DURATION",
    help="close connections with no call in flight for this long (default: 5m)",
)
@click.option(
    "--max-connections",
    type=int,
    default=None,
    metavar="N",
    help="hold at most N connections (default: 1024, or half the open-file limit)",
)
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(LEVELS),
    help="how much to log to stderr (default: info)",
)
def local(**options: Any) -> int:
    """Run an embedded Flame cluster on this machine.

    It serves until Ctrl-C or SIGTERM, then stops with every process it started.
    """
    return run(LocalOptions(**options))
