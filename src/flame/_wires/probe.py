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
not with a status; v0.4 and v0.5 have no TLS. So a probe of an ``http://``
endpoint that fails that way says to use ``https://``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .._errors import FlameError, FlameErrorCode

__all__ = ["PROBES", "probe_wire"]

#: The probe calls, in order, and the wire an OK names.
PROBES = (
    ("/flame.v1.Frontend/ListApplication", "v0.6"),
    ("/flame.Frontend/ListExecutor", "v0.5"),
)
#: The wire when every probe was answered UNIMPLEMENTED.
OLDEST = "v0.4"

#: Makes one unary call: ``call(path, request)``; raises FlameError.
UnaryCall = Callable[[str, bytes], Awaitable[object]]


async def probe_wire(call: UnaryCall, endpoint: str, tls: bool) -> str:
    """The wire (``"v0.4"``, ``"v0.5"``, ``"v0.6"``) the server at ``endpoint`` speaks.

    ``call`` makes one unary call to the server. A failure other than
    UNIMPLEMENTED is raised, as the FlameError it is, with what was being
    done; on a plaintext endpoint, one that looks like a TLS server's
    refusal is raised as ``INVALID_CONFIG``, saying to use ``https://``.
    """
    for path, wire in PROBES:
        try:
            await call(path, b"")
        except FlameError as error:
            if error.code is FlameErrorCode.UNIMPLEMENTED:
                continue
            raise _probe_failed(error, endpoint, tls) from None
        return wire
    return OLDEST


def _probe_failed(error: FlameError, endpoint: str, tls: bool) -> FlameError:
    # A TLS server that reads our plaintext preface answers with a TLS alert
    # (bytes no HTTP/2 frame starts with) or closes the connection.
    if not tls and error.code in (FlameErrorCode.UNAVAILABLE, FlameErrorCode.INTERNAL):
        secure = "https://" + endpoint.partition("://")[2]
        return FlameError(
            FlameErrorCode.INVALID_CONFIG,
            f"finding out which Flame wire {endpoint} speaks failed: {error.message}. "
            f"A Flame v0.6 cluster that serves TLS answers plaintext so: if it does, "
            f"connect to {secure!r} (with ca_file= for a private CA)",
        )
    return FlameError(
        error.code, f"finding out which Flame wire {endpoint} speaks failed: {error.message}"
    )
