"""The bytes of HTTP/2 and gRPC: frame layouts, header blocks, message prefixes.

What the protocol (:mod:`._connection`) writes and parses, kept apart from
what it decides:

* :func:`frame` lays out one frame; the constants name types, flags,
  settings and error codes (RFC 9113);
* :func:`request_headers` makes the HPACK block of a method path once, and
  :func:`timeout_field` the ``grpc-timeout`` header a call appends to it;
* :class:`HeaderDecoder` decodes the server's header blocks, remembering
  those that leave its table unchanged;
* :func:`grpc_message` puts gRPC's 5-byte prefix before a message.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import cast

import hpack

from ._status import Status

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113, section 6).
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Settings.
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5

# Error codes.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
FLOW_CONTROL_ERROR = 0x3
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9

ERROR_NAMES = {
    0x0: "NO_ERROR",
    0x1: "PROTOCOL_ERROR",
    0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT",
    0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM",
    0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR",
    0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY",
    0xD: "HTTP_1_1_REQUIRED",
}

#: The gRPC status a stream reset by the server stands for (gRPC's
#: "HTTP/2 transport mapping"); anything else is INTERNAL.
RESET_STATUS = {
    REFUSED_STREAM: Status.UNAVAILABLE,
    CANCEL: Status.CANCELLED,
    0xB: Status.RESOURCE_EXHAUSTED,
    0xC: Status.PERMISSION_DENIED,
}

#: The gRPC status of a reply whose HTTP status is not 200 (gRPC's "HTTP to
#: gRPC status code mapping").
HTTP_STATUS = {
    "400": Status.INTERNAL,
    "401": Status.UNAUTHENTICATED,
    "403": Status.PERMISSION_DENIED,
    "404": Status.UNIMPLEMENTED,
    "429": Status.UNAVAILABLE,
    "502": Status.UNAVAILABLE,
    "503": Status.UNAVAILABLE,
    "504": Status.UNAVAILABLE,
}

MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**31 - 1
DEFAULT_WINDOW = 65_535
DEFAULT_FRAME_SIZE = 16_384

#: What we let the server send on one stream, and on the whole connection,
#: before it waits for our WINDOW_UPDATE. Credit goes back in steps of half
#: a window: for the connection as data arrives, for a stream as data
#: arrives unless its caller has a step's worth of messages not taken yet
#: (see Connection.credit), so an unread stream holds its server back.
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 16 << 20
CREDIT_STEP = STREAM_WINDOW // 2

#: Decoded header blocks remembered per connection.
HEADER_CACHE_SIZE = 64

frame_header = struct.Struct(">BHBBI")  # 24-bit length as a byte and a short
_pack_header = struct.Struct(">HBBBI")  # the same, to write: length high 16, low 8
u32 = struct.Struct(">I")


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame: its 9-byte header and ``payload``."""
    length = len(payload)
    return _pack_header.pack(length >> 8, length & 0xFF, kind, flags, stream_id) + payload


def preface() -> bytes:
    """What a client sends first: the preface, its settings, and a larger window."""
    settings = struct.pack(
        ">HIHI", SETTINGS_ENABLE_PUSH, 0, SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW
    )
    return (
        PREFACE
        + frame(SETTINGS, 0, 0, settings)
        + frame(WINDOW_UPDATE, 0, 0, u32.pack(CONNECTION_WINDOW - DEFAULT_WINDOW))
    )


def request_headers(
    scheme: str,
    authority: str,
    path: str,
    user_agent: str,
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    """The HPACK block of a gRPC request to ``path``, the same on every call.

    It first sets the dynamic table's size to 0 and then adds nothing to it,
    so the block can be sent again and again whatever the server's decoder
    holds, and a server lowering its table size asks nothing of us.
    ``extra`` are the connection's own headers (``authorization``), sent
    on every call; they are marked never to be indexed, by the server or
    anything between, as secrets should be (RFC 7541, 7.1.3).
    """
    encoder = hpack.Encoder()
    encoder.header_table_size = 0  # announced at the start of the block
    return encoder.encode(
        [
            (":method", "POST"),
            (":scheme", scheme),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("user-agent", user_agent),
            *(hpack.NeverIndexedHeaderTuple(name, value) for name, value in extra),
        ],
        # Plain strings: a few bytes more once per call, where a Huffman
        # decode per call costs the server (ours, in Python) several times
        # the time of copying them.
        huffman=False,
    )


# A literal header field without indexing, with a new name (RFC 7541,
# 6.2.2), its strings plain: the table is left as it is, so the field can
# follow the cached block of any path.
_TIMEOUT_NAME = b"\x00\x0cgrpc-timeout"


def timeout_field(seconds: float) -> bytes:
    """The ``grpc-timeout`` header for ``seconds``, to append to a request's header block.

    In milliseconds, rounded up so that the server's deadline is never the
    earlier one; whole seconds (then hours) past what 8 digits of
    milliseconds hold.
    """
    millis = int(seconds * 1000.0) + 1
    if millis <= 99_999_999:
        value = b"%dm" % millis
    elif millis // 1000 < 99_999_999:
        value = b"%dS" % (millis // 1000 + 1)
    else:
        value = b"%dH" % min(99_999_999, millis // 3_600_000 + 1)
    return _TIMEOUT_NAME + bytes((len(value),)) + value


def grpc_message(payload: bytes) -> bytes:
    """``payload`` with gRPC's 5-byte prefix: uncompressed, and its length."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


class HeaderDecoder:
    """``hpack``'s decoder, remembering blocks that leave its table unchanged.

    A block decodes to the same headers as long as the dynamic table is the
    same, and the table changes only when a block adds to it or resizes it.
    So a block is remembered if decoding it changed nothing, and everything
    remembered is forgotten when any block changes the table.
    """

    def __init__(self) -> None:
        self._decoder = hpack.Decoder()
        self._cache: dict[bytes, dict[str, str]] = {}

    def decode(self, block: bytes) -> dict[str, str]:
        cached = self._cache.get(block)
        if cached is not None:
            return cached
        table = self._decoder.header_table
        entries = table.dynamic_entries
        newest = entries[0] if entries else None
        count = len(entries)
        # A resize of an empty table changes no entry, yet a block replayed
        # from here would not redo it.
        size = table.maxsize
        headers: dict[str, str] = {}
        decoded = cast("list[tuple[str, str]]", self._decoder.decode(block))
        for name, value in decoded:
            # Repeated names are joined, as HTTP does; gRPC sends none we read.
            if name in headers:
                headers[name] = f"{headers[name]},{value}"
            else:
                headers[name] = value
        if (
            len(entries) == count
            and (entries[0] if entries else None) is newest
            and table.maxsize == size
        ):
            if len(self._cache) >= HEADER_CACHE_SIZE:
                self._cache.clear()
            self._cache[block] = headers
        else:
            self._cache.clear()
        return headers
