"""The transport: how the SDK speaks gRPC, as a client and as a server.

A client's calls go over one lean HTTP/2 connection per endpoint, written
for the job (unary and server-streaming calls, nothing more) and run by the
caller's own backend, asyncio or trio: no thread, no task that outlives the
connection. Servers are a general gRPC server library's, on asyncio. The
modules, from the wire up:

Client
    ``_frames``
        the bytes: frame layouts, HPACK header blocks and the cache of
        decoded ones, gRPC's message prefix, the ``grpc-timeout`` field.
    ``_stream``
        one call's stream: the messages that arrived, how the call ended.
    ``_connection``
        one HTTP/2 connection's state, without I/O: streams, flow control
        both ways, the server's settings, GOAWAY.
    ``_asyncio``, ``_trio``
        the two drivers that do the I/O, each with its own ``connect``:
        an asyncio protocol; a non-blocking socket read by the callers that
        wait on it.
    ``_status``
        gRPC statuses, the four exceptions the protocol raises, and the
        table from a status to a FlameErrorCode.
    ``_pool``
        the current connection and those going away; the one rule for
        deadlines and for making again a call the server never processed
        (:class:`RetryPolicy`).
    ``_endpoint``
        the endpoint URL (``http(s)://host:port``, or ``unix:PATH`` for a
        Unix socket), the TLS context, the words for what TLS and the
        network raise.
    ``_limits``
        message sizes, the client's keepalive, the server's limits: one
        definition of each default, for both sides.
    ``_channel``
        :class:`Channel`, what the rest of the SDK calls through (a call, a
        stream, the surface generated stubs use); every failure becomes a
        FlameError there, once.

Server
    ``_server``
        :func:`serve` (on TCP or a Unix socket), the server library with our
        changes (at the edge of every connection: the message size, the token, idle connections,
        the connection cap; every request's wire types), the handlers of
        the hand-written codec, :func:`refuse`.
    ``_loop``
        :class:`GrpcLoop`, where servers run under asyncio or trio.

Why it is built this way, with figures: docs/transport.md.
"""

from ._channel import Channel, Stream
from ._endpoint import Endpoint
from ._limits import MAX_MESSAGE_BYTES, Keepalive, ServerLimits, reply_limit, request_limit
from ._loop import GrpcLoop, open_grpc_loop
from ._pool import RetryPolicy
from ._server import (
    CLOSED_STREAMS_KEPT,
    SERVER_MAX_STREAMS,
    Server,
    pid,
    refuse,
    serve,
    server_stream_handler,
    unary_handler,
)

__all__ = [
    "CLOSED_STREAMS_KEPT",
    "MAX_MESSAGE_BYTES",
    "SERVER_MAX_STREAMS",
    "Channel",
    "Endpoint",
    "GrpcLoop",
    "Keepalive",
    "RetryPolicy",
    "Server",
    "ServerLimits",
    "Stream",
    "open_grpc_loop",
    "pid",
    "refuse",
    "reply_limit",
    "request_limit",
    "serve",
    "server_stream_handler",
    "unary_handler",
]
