"""Which Flame wire a server speaks, found by at most two cheap calls.

Each release serves a different set of Frontend paths, and a server answers
UNIMPLEMENTED for a path it does not serve (``flame-v0.6`` page, "Telling
the versions apart"):

1. ``/flame.v1.Frontend/ListApplication``: OK only on v0.6;
2. ``/flame.Frontend/ListExecutor``: OK only on v0.5 (v0.4's Frontend has none).

Both requests have no fields, so the empty message is sent, and the replies
are not read: the same field numbers mean different things across wires.
Neither call changes anything on the cluster.

A v0.6 server with TLS refuses a plaintext probe at the connection level,
not with a status; v0.4 and v0.5 have no TLS. So when the probe of an
``http://`` endpoint fails, the client tries a TLS handshake there
(:func:`answers_tls`): if the server answers it, the error says to use
``https://``.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Awaitable, Callable

import anyio

from .._errors import FlameError, FlameErrorCode

__all__ = ["PROBES", "answers_tls", "probe_wire"]

#: The probe calls, in order, and the wire an OK names.
PROBES = (
    ("/flame.v1.Frontend/ListApplication", "v0.6"),
    ("/flame.Frontend/ListExecutor", "v0.5"),
)
#: The wire when every probe was answered UNIMPLEMENTED.
OLDEST = "v0.4"

#: Makes one unary call: ``call(path, request)``; raises FlameError.
UnaryCall = Callable[[str, bytes], Awaitable[object]]


async def probe_wire(
    call: UnaryCall, endpoint: str, speaks_tls: Callable[[], Awaitable[bool]] | None = None
) -> str:
    """The wire (``"v0.4"``, ``"v0.5"``, ``"v0.6"``) the server at ``endpoint`` speaks.

    ``call`` makes one unary call to the server. A failure other than
    UNIMPLEMENTED is raised, as the FlameError it is, with what was being
    done; ``speaks_tls`` (given for a plaintext endpoint) tells whether the
    server answers TLS instead, in which case ``INVALID_CONFIG`` is raised,
    saying to use ``https://``.
    """
    for path, wire in PROBES:
        try:
            await call(path, b"")
        except FlameError as error:
            if error.code is FlameErrorCode.UNIMPLEMENTED:
                continue
            tls = False
            if speaks_tls is not None and error.code in (
                FlameErrorCode.UNAVAILABLE,
                FlameErrorCode.INTERNAL,
            ):
                tls = await speaks_tls()
            raise _probe_failed(error, endpoint, tls) from None
        return wire
    return OLDEST


async def answers_tls(host: str, port: int, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
    """Whether the server at ``host:port`` completes a TLS handshake (its certificate unchecked).

    Only the handshake is made; nothing is sent over it.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with anyio.fail_after(timeout):
            stream = await anyio.connect_tcp(host, port, ssl_context=context, tls=True)
    except Exception:
        return False
    # The handshake is done: that is the answer, whatever closing says.
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        await anyio.aclose_forcefully(stream)
    return True


def _probe_failed(error: FlameError, endpoint: str, tls: bool) -> FlameError:
    if tls:
        secure = "https://" + endpoint.partition("://")[2]
        return FlameError(
            FlameErrorCode.INVALID_CONFIG,
            f"finding out which Flame wire {endpoint} speaks failed: {error.message}. "
            f"The server speaks TLS (as a Flame v0.6 cluster may): connect to {secure!r} "
            "(with ca_file= for a private CA)",
        )
    return FlameError(
        error.code, f"finding out which Flame wire {endpoint} speaks failed: {error.message}"
    )
