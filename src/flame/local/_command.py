"""``flame local``: run an embedded Flame cluster until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

import anyio

from .._errors import FlameError
from ._cluster import LocalCluster
from ._config import ClusterConfig

__all__ = ["configure", "run"]

log = logging.getLogger("flame.local")

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
LEVELS = ("debug", "info", "warning", "error")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``flame local`` to ``parser``."""
    parser.add_argument(
        "--endpoint",
        default=None,
        help=f"where to serve (default: the config's endpoint, else {DEFAULT_ENDPOINT})",
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="PATH",
        help="a flame-conf.yaml; its applications are registered at start",
    )
    parser.add_argument(
        "--slots",
        type=int,
        default=None,
        help=f"executor slots (default: the number of CPUs, {os.cpu_count() or 1} here)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=LEVELS,
        help="how much to log to stderr (default: info)",
    )


def _config(args: argparse.Namespace) -> ClusterConfig:
    overrides: dict[str, Any] = {"slots": args.slots}
    if args.config is not None:
        config = ClusterConfig.load(args.config, **overrides)
        if args.endpoint is not None or config.endpoint is None:
            config = ClusterConfig.load(
                args.config, **overrides, endpoint=args.endpoint or DEFAULT_ENDPOINT
            )
        return config
    return ClusterConfig(
        endpoint=args.endpoint or DEFAULT_ENDPOINT,
        **{k: v for k, v in overrides.items() if v is not None},
    )


def _flame_error(exc: BaseException) -> FlameError | None:
    """The FlameError in ``exc``, looking inside exception groups."""
    if isinstance(exc, FlameError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _flame_error(inner)
        if found is not None:
            return found
    return None


async def _serve(config: ClusterConfig) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with LocalCluster(config) as cluster:
            print(f"flame local: serving on {cluster.endpoint}", flush=True)
            async for signum in signals:
                log.info("stopping on %s", signal.Signals(signum).name)
                break


def run(args: argparse.Namespace) -> int:
    """Run ``flame local`` with parsed ``args``; the exit status."""
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = _config(args)
    except FlameError as exc:
        print(f"flame local: {exc.message}", file=sys.stderr)
        return 2
    options: dict[str, Any] = {}
    try:
        import uvloop  # noqa: F401

        options["use_uvloop"] = True
    except ImportError:
        pass
    try:
        anyio.run(_serve, config, backend="asyncio", backend_options=options)
    except KeyboardInterrupt:
        pass
    except BaseException as exc:
        error = _flame_error(exc)
        if error is None:
            raise
        print(f"flame local: {error.message}", file=sys.stderr)
        return 1
    print("flame local: stopped", flush=True)
    return 0
