"""``flame local``: run an embedded Flame cluster until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

import anyio
import attrs

from .._errors import FlameError, FlameErrorCode, flame_error_in
from ._cluster import LocalCluster
from ._config import ClusterConfig, TlsConfig, parse_duration, token_from_env
from ._security import exposure

__all__ = ["DEFAULT_ENDPOINT", "LEVELS", "LocalOptions", "cluster_config", "run"]

log = logging.getLogger("flame.local")

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
LEVELS = ("debug", "info", "warning", "error")


@attrs.frozen
class LocalOptions:
    """The options of ``flame local``, as its command line gives them (None: not given)."""

    wire: str | None = None
    endpoint: str | None = None
    config: str | None = None
    slots: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    retention_max_age: str | None = None
    retention_max_closed: int | None = None
    max_message_bytes: int | None = None
    idle_timeout: str | None = None
    max_connections: int | None = None
    log_level: str = "info"


def cluster_config(args: LocalOptions) -> ClusterConfig:
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
    if args.tls_cert is not None and args.tls_key is not None:
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


def run(args: LocalOptions) -> int:
    """Run ``flame local`` with ``args``; the exit status."""
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = cluster_config(args)
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
        error = flame_error_in(exc)
        if error is None:
            raise
        print(f"flame local: {error.message}", file=sys.stderr)
        return 1
    print("flame local: stopped", flush=True)
    return 0
