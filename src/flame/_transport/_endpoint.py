"""Where a channel connects, and how it says so when it cannot.

:class:`Endpoint` is a parsed ``http(s)://host:port`` or ``unix:PATH``; :func:`ssl_context`
the TLS context of an ``https://`` one; :func:`tls_advice` and
:func:`os_reason` turn what TLS and the network raised into a sentence a
user can act on.
"""

from __future__ import annotations

import os
import ssl
import urllib.parse

import attrs

from .._errors import FlameError, FlameErrorCode

__all__ = ["Endpoint", "os_reason", "ssl_context", "tls_advice"]


#: The ``:authority`` of a call over a Unix socket, which has no host name.
UNIX_AUTHORITY = "localhost"


@attrs.frozen
class Endpoint:
    """A parsed endpoint: ``http://host:port``, ``https://host:port``, or ``unix:PATH``.

    A ``unix:`` endpoint is a Unix domain socket, always plaintext: ``path``
    is its filesystem path (``unix:relative/path``, ``unix:/absolute/path``
    or ``unix:///absolute/path``, as gRPC names them), ``host`` and ``port``
    are unused. Flame uses them between an executor and its services.
    """

    url: str
    host: str
    port: int
    tls: bool
    path: str | None = None

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Parse ``url``; a bad one raises FlameError(INVALID_CONFIG) saying why."""
        if not isinstance(url, str) or not url.strip():
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"endpoint {url!r} is empty; give one like 'http://127.0.0.1:8080'",
            )
        if url.strip().startswith("unix:"):
            return cls._parse_unix(url.strip())
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https", "grpc", "grpcs"):
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"endpoint {url!r} has scheme {parts.scheme or '(none)'!r}; "
                "use 'http://host:port', or 'https://host:port' for TLS",
            )
        try:
            port = parts.port
        except ValueError:
            port = -1
        if not parts.hostname or port is None or port <= 0:
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"endpoint {url!r} needs a host and a port, like 'http://127.0.0.1:8080'",
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"endpoint {url!r} has a path or query; give only scheme, host and port",
            )
        tls = parts.scheme in ("https", "grpcs")
        return cls(url=url.strip(), host=parts.hostname, port=port, tls=tls)

    @classmethod
    def _parse_unix(cls, url: str) -> Endpoint:
        path = url[len("unix:") :]
        if path.startswith("//"):
            # unix://host/... names a host, which a Unix socket has none of.
            if not path.startswith("///"):
                raise FlameError(
                    FlameErrorCode.INVALID_CONFIG,
                    f"endpoint {url!r}: a Unix socket endpoint is 'unix:/absolute/path', "
                    "'unix:///absolute/path' or 'unix:relative/path'",
                )
            path = path[2:]
        if not path or "\0" in path:
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"endpoint {url!r} names no socket; give one like 'unix:/run/service.sock'",
            )
        return cls(url=url, host=UNIX_AUTHORITY, port=0, tls=False, path=path)

    @classmethod
    def unix(cls, path: str) -> Endpoint:
        """The endpoint of the Unix socket at the filesystem path ``path``."""
        return cls._parse_unix(f"unix:{path}")

    @property
    def authority(self) -> str:
        """``host:port`` as HTTP/2's ``:authority`` header carries it."""
        if self.path is not None:
            return UNIX_AUTHORITY
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.url


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The client TLS context: the system's CAs, or only ``ca_file``'s; h2 by ALPN."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise FlameError(
            FlameErrorCode.INVALID_CONFIG,
            f"cannot load the CA file {ca_file!r}: {exc}",
        ) from None
    context.set_alpn_protocols(["h2"])
    return context


def tls_advice(exc: ssl.SSLError) -> str:
    """What a TLS failure means for the user, and what to do about it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS: the server's certificate is not trusted ({exc.verify_message}); give "
            "the file of the CA that signed it, or fix the host name in the endpoint"
        )
    return f"TLS: {exc.reason or exc}; is the endpoint really https://?"


def os_reason(exc: BaseException) -> str:
    """Why the network failed, in words: "connection refused" rather than an errno."""
    # asyncio says "Connect call failed (address)", trio "all attempts to
    # connect ... failed" around a group of errors: the errno says why.
    cause = exc.__cause__
    for error in (exc, cause, *getattr(cause, "exceptions", ())):
        errno = getattr(error, "errno", None)
        if isinstance(errno, int) and errno > 0:
            return os.strerror(errno).lower()
    return str(getattr(exc, "strerror", None) or exc)
