"""``flame local``: run an embedded Flame cluster until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

import anyio
import attrs

from .._errors import FlameError, FlameErrorCode
from ._cluster import LocalCluster
from ._config import WIRES, ClusterConfig, TlsConfig, parse_duration, token_from_env
from ._security import exposure

__all__ = ["configure", "run"]

log = logging.getLogger("flame.local")

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
LEVELS = ("debug", "info", "warning", "error")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``flame local`` to ``parser``."""
    parser.add_argument(
        "--wire",
        default=None,
        choices=WIRES,
        help="the Flame wire to speak, as one Flame cluster speaks one: v0.4 (flame.Frontend; "
        "Log, Stdio, Shell and Grpc applications) or v0.6 (flame.v1.Frontend; Host "
        "applications, through v0.6's service contract). Default: the config's `wire`, "
        "else v0.4",
    )
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
        "--tls-cert",
        default=None,
        metavar="PATH",
        help="serve https with this certificate (PEM; with --tls-key; overrides the config's tls)",
    )
    parser.add_argument(
        "--tls-key", default=None, metavar="PATH", help="the private key of --tls-cert (PEM)"
    )
    parser.add_argument(
        "--retention-max-age",
        default=None,
        metavar="DURATION",
        help="delete closed sessions and their tasks this long after closing (90s, 15m, 2h, 7d)",
    )
    parser.add_argument(
        "--retention-max-closed",
        type=int,
        default=None,
        metavar="N",
        help="keep at most N closed sessions (with their tasks); the oldest go first",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=None,
        metavar="N",
        help="the largest request (task input, common data) and task output, in bytes "
        "(default: 4 MiB); clients must be given the same",
    )
    parser.add_argument(
        "--idle-timeout",
        default=None,
        metavar="DURATION",
        help="close connections with no call in flight for this long (default: 5m)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        metavar="N",
        help="hold at most N connections (default: 1024, or half the open-file limit)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=LEVELS,
        help="how much to log to stderr (default: info)",
    )


def _config(args: argparse.Namespace) -> ClusterConfig:
    """The config file's, or the defaults, with what the command line says over them."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise FlameError(
            FlameErrorCode.INVALID_CONFIG, "give --tls-cert and --tls-key together, or neither"
        )
    overrides: dict[str, Any] = {
        "slots": args.slots,
        "wire": args.wire,
        "max_message_bytes": args.max_message_bytes,
        "max_connections": args.max_connections,
    }
    if args.idle_timeout is not None:
        overrides["idle_timeout"] = parse_duration(args.idle_timeout, "--idle-timeout")
    if args.tls_cert is not None:
        overrides["tls"] = TlsConfig(cert_file=args.tls_cert, key_file=args.tls_key)
    if args.config is not None:
        config = ClusterConfig.load(args.config, **overrides)
        if args.endpoint is not None or config.endpoint is None:
            config = ClusterConfig.load(
                args.config, **overrides, endpoint=args.endpoint or DEFAULT_ENDPOINT
            )
    else:
        config = ClusterConfig(
            endpoint=args.endpoint or DEFAULT_ENDPOINT,
            auth_token=token_from_env(),
            **{k: v for k, v in overrides.items() if v is not None},
        )
    # Each retention option replaces its key alone: the file's other one stays.
    retention: dict[str, Any] = {}
    if args.retention_max_age is not None:
        retention["max_age"] = parse_duration(args.retention_max_age, "--retention-max-age")
    if args.retention_max_closed is not None:
        retention["max_closed_sessions"] = args.retention_max_closed
    if retention:
        config = attrs.evolve(config, retention=attrs.evolve(config.retention, **retention))
    return config


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
            warning = exposure(config)
            if warning is not None and not log.isEnabledFor(logging.WARNING):
                # The cluster logged it; the log level hides it, and this must be seen.
                print(f"flame local: warning: {warning}", file=sys.stderr, flush=True)
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
