"""What protects the embedded cluster's port, and the warning when little does.

:func:`server_security` turns a :class:`ClusterConfig` into what the server
is given: the TLS context of ``tls`` (or None: plain http), and the shared
``auth_token``, which the server checks on every call at the edge of each
connection (:mod:`flame._transport._edge`): a call without it is refused
UNAUTHENTICATED before anything reads it.

:func:`exposure` is the warning for a cluster reachable beyond this machine:
anyone who reaches the port can register an application and have it run
commands as the cluster's user (Stdio and Shell applications), and without
TLS can read every task's input and output on the network.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
import stat

import attrs

from .._errors import FlameError, FlameErrorCode
from ._config import ClusterConfig, TlsConfig

__all__ = ["ServerSecurity", "exposure", "server_security"]

log = logging.getLogger("flame.local.security")


@attrs.frozen
class ServerSecurity:
    """What the server is given: its TLS context, and the token clients are to present."""

    ssl: ssl.SSLContext | None
    auth_token: str | None = attrs.field(repr=False)


def server_security(config: ClusterConfig) -> ServerSecurity:
    """The TLS context and token of ``config``; INVALID_CONFIG if the certificate cannot be used."""
    context = None if config.tls is None else _tls_context(config.tls)
    return ServerSecurity(ssl=context, auth_token=config.auth_token)


def _bad(message: str) -> FlameError:
    return FlameError(FlameErrorCode.INVALID_CONFIG, f"tls: {message}")


def _tls_context(tls: TlsConfig) -> ssl.SSLContext:
    for key, path in (("cert_file", tls.cert_file), ("key_file", tls.key_file)):
        if not os.path.isfile(path):
            raise _bad(f"{key} {path!r} is not a file; give the path of a PEM file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except ssl.SSLError as exc:
        raise _bad(
            f"cannot use the certificate {tls.cert_file!r} with the key {tls.key_file!r} "
            f"({exc.reason or exc}); both are PEM files, and the key is the certificate's"
        ) from None
    except OSError as exc:
        raise _bad(f"cannot read {exc.filename or tls.cert_file!r}: {exc.strerror}") from None
    mode = os.stat(tls.key_file).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "the TLS key %s can be read by others than its owner (mode %o): chmod 600 it",
            tls.key_file,
            stat.S_IMODE(mode),
        )
    return context


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine alone."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(
        ipaddress.ip_address(str(address).split("%", 1)[0]).is_loopback for address in addresses
    )


def exposure(config: ClusterConfig) -> str | None:
    """The warning for ``config`` serving beyond this machine unprotected, or None."""
    if is_loopback(config.host):
        return None
    gaps = []
    if config.auth_token is None:
        gaps.append(
            "without a token (auth_token), so whoever reaches the port can run commands as "
            "this user (through Stdio and Shell applications)"
        )
    if config.tls is None:
        carried = (
            "task inputs and outputs cross the network in clear"
            if config.auth_token is None
            else "task inputs and outputs, and the token itself, cross the network in clear: "
            "whoever can watch the network can take the token"
        )
        gaps.append(f"without TLS, so {carried}")
    if not gaps:
        return None
    return (
        f"serving on {config.host}:{config.port}, beyond this machine, "
        + "; and ".join(gaps)
        + ". Serve on 127.0.0.1 unless the network around it is trusted."
    )
