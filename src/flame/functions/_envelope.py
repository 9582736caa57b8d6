"""The wire format of a function session: what the client and the service exchange.

Every part is bytes that Flame carries without looking inside.

The session's ``common_data`` carries the function, once::

    b"flame-function/1\\n"       magic and format number
    {"python": "3.11.9", "sdk": "0.1.0", "protocol": 5, "function": "estimate",
     "file": "/home/me/pi.py"}\\n
    <the function, cloudpickled>

The header is JSON, readable whatever the Python, so that a service can say
"this needs Python 3.12" rather than fail to unpickle. A task's input is
one call or the probe::

    b"C" <call number: 8 bytes, big-endian> <(args, kwargs), cloudpickled>
    b"P"                                     the probe a session opens with

A task's output is one reply; the call number is the input's, echoed, so
that a reply says which input it answers whatever order tasks finish in::

    b"R" <number> <the value, cloudpickled>                     it returned
    b"E" <number> {"type", "text", "traceback", "exception"}\\n  it raised
         <the exception, cloudpickled; nothing if it would not pickle>
    b"F" <number> {"code": "INVALID_CONFIG", "message": "..."}  the call could
         not be made, or its result not sent: a FlameError to raise
    b"V" {"python", "sdk", "protocol", "function"}             the probe's answer

A call that raised is a task that succeeded with an ``E`` reply, not a
failed task: see ``docs/functions.md`` for why.
"""

from __future__ import annotations

import functools
import importlib.metadata
import itertools
import json
import pickle
import platform
import types
from typing import Any

import attrs

from .._errors import FlameError, FlameErrorCode
from . import _pickling

__all__ = [
    "PROBE",
    "Failed",
    "FunctionHeader",
    "Raised",
    "Returned",
    "Versions",
    "decode_call",
    "decode_function",
    "decode_reply",
    "encode_call",
    "encode_failed",
    "encode_function",
    "encode_raised",
    "encode_returned",
    "encode_versions",
    "function_name",
    "is_probe",
    "source_file",
]

MAGIC = b"flame-function/1\n"
PROBE = b"P"

_CALL = b"C"[0]
_RETURNED = b"R"
_RAISED = b"E"
_FAILED = b"F"
_VERSIONS = b"V"
_NUMBER = 8


class FormatError(Exception):
    """Bytes that are not of this format; the text says what they were expected to be."""


# --------------------------------------------------------------------------
# Versions


@functools.lru_cache(maxsize=1)
def _sdk_version() -> str:
    try:
        return importlib.metadata.version("flame-sdk")
    except importlib.metadata.PackageNotFoundError:
        # Run from a source tree that was never installed.
        return "unknown"


@attrs.frozen
class Versions:
    """What decides whether a pickle made on one side can be read on the other."""

    python: str
    """The full Python version, such as ``3.11.9``; major.minor must agree."""
    sdk: str
    """The ``flame-sdk`` package version; must be the same on both sides."""
    protocol: int
    """The pickle protocol the client pickles with."""

    @classmethod
    def here(cls) -> Versions:
        return cls(platform.python_version(), _sdk_version(), _pickling.PROTOCOL)

    @property
    def python_minor(self) -> str:
        return ".".join(self.python.split(".")[:2])

    def mismatch(self, service: Versions) -> str | None:
        """Why a client with these versions cannot use ``service``'s; None if it can.

        Python must agree on major.minor (cloudpickle carries bytecode, which
        changes between minor versions); flame-sdk must be the same version
        (the format and the SDK's own pickled types are only fixed within
        one); the service must read the client's pickle protocol.
        """
        problems = []
        if self.python_minor != service.python_minor:
            problems.append(
                f"the client runs Python {self.python} and the service Python {service.python}"
            )
        if self.sdk != service.sdk:
            problems.append(
                f"the client has flame-sdk {self.sdk} and the service flame-sdk {service.sdk}"
            )
        if self.protocol > pickle.HIGHEST_PROTOCOL:
            problems.append(
                f"the client pickles with protocol {self.protocol}, above the service's "
                f"highest, {pickle.HIGHEST_PROTOCOL}"
            )
        return "; ".join(problems) or None

    def _to_json(self) -> dict[str, Any]:
        return {"python": self.python, "sdk": self.sdk, "protocol": self.protocol}

    @classmethod
    def _from_json(cls, fields: dict[str, Any]) -> Versions:
        try:
            return cls(str(fields["python"]), str(fields["sdk"]), int(fields["protocol"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"versions without {exc}") from None


# --------------------------------------------------------------------------
# The function, in common_data


def function_name(function: Any) -> str:
    """A name for ``function`` in messages: ``module.qualname``, or its repr."""
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    if not isinstance(name, str):
        return repr(function)[:200]
    module = getattr(function, "__module__", None)
    return f"{module}.{name}" if isinstance(module, str) and module != "__main__" else name


def source_file(function: Any) -> str | None:
    """The file ``function`` was defined in, if it is a Python function (or method)."""
    function = getattr(function, "__func__", function)
    code = getattr(function, "__code__", None)
    return code.co_filename if isinstance(code, types.CodeType) else None


@attrs.frozen
class FunctionHeader:
    """The readable part of a function envelope: who sent it, and the function's name."""

    versions: Versions
    function: str
    file: str | None = None
    """Where the function was defined, for its tracebacks: cloudpickle does not keep it."""


def encode_function(function: Any, name: str) -> bytes:
    """The session's common data for ``function``; PickleFailure if it cannot be pickled."""
    payload = _pickling.dumps(function, f"the function {name}")
    header: dict[str, Any] = Versions.here()._to_json()
    header["function"] = name
    header["file"] = source_file(function)
    return MAGIC + json.dumps(header).encode() + b"\n" + payload


def decode_function(data: bytes | None) -> tuple[FunctionHeader, bytes]:
    """The header and the pickled function of a session's common data."""
    if not data or not data.startswith(MAGIC):
        raise FormatError(
            "the session's common data is not a function: open the session with "
            "Connection.function_session, which puts the function there"
        )
    line_end = data.find(b"\n", len(MAGIC))
    if line_end < 0:
        raise FormatError("the session's function has no header line")
    try:
        fields = json.loads(data[len(MAGIC) : line_end])
        file = fields.get("file")
        header = FunctionHeader(
            Versions._from_json(fields),
            str(fields.get("function", "?")),
            file if isinstance(file, str) else None,
        )
    except (ValueError, AttributeError) as exc:
        raise FormatError(f"the session's function has a header that is not JSON: {exc}") from None
    return header, data[line_end + 1 :]


# --------------------------------------------------------------------------
# Calls, in task inputs


def encode_call(number: int, args: tuple[Any, ...], kwargs: dict[str, Any], what: str) -> bytes:
    """A call's task input; PickleFailure naming the argument that cannot be pickled."""
    # Named lazily: only a failure reads them.
    arguments = itertools.chain(
        ((f"argument {position}", value) for position, value in enumerate(args)),
        ((f"keyword argument {name!r}", value) for name, value in kwargs.items()),
    )
    payload = _pickling.dumps((args, kwargs), what, arguments)
    return bytes((_CALL,)) + number.to_bytes(_NUMBER, "big") + payload


def is_probe(data: bytes) -> bool:
    return data == PROBE


def decode_call(data: bytes) -> tuple[bytes, tuple[Any, ...], dict[str, Any]]:
    """The call number (as its bytes, to echo), args and kwargs of a call's task input.

    Raises FormatError for input that is not a call, and whatever unpickling
    raises for a call whose arguments do not unpickle here.
    """
    if len(data) <= 1 + _NUMBER or data[0] != _CALL:
        raise FormatError(
            f"the task's input ({len(data)} bytes, starting {data[:16]!r}) is not a call: "
            "the tasks of a function session are made by FunctionSession"
        )
    number = data[1 : 1 + _NUMBER]
    args, kwargs = pickle.loads(data[1 + _NUMBER :])
    return number, args, kwargs


def call_number(data: bytes) -> bytes:
    """The call number of a task input, for a reply; zeros when it has none."""
    if len(data) > _NUMBER and data[0] == _CALL:
        return data[1 : 1 + _NUMBER]
    return bytes(_NUMBER)


# --------------------------------------------------------------------------
# Replies, in task outputs


@attrs.frozen
class Returned:
    """The call ``index`` returned; ``pickled`` is its value."""

    index: int
    pickled: bytes

    def value(self) -> Any:
        return pickle.loads(self.pickled)


@attrs.frozen
class Raised:
    """The call ``index`` raised ``type_name``; ``pickled`` is the exception, if it pickled."""

    index: int
    type_name: str
    text: str
    traceback: str
    is_exception: bool
    """True for an ``Exception``; False for other ``BaseException``s (SystemExit, say)."""
    pickled: bytes


@attrs.frozen
class Failed:
    """The call ``index`` could not be made, or its result not sent back."""

    index: int
    code: FlameErrorCode
    message: str

    def error(self) -> FlameError:
        return FlameError(self.code, self.message)


def encode_returned(number: bytes, value: bytes) -> bytes:
    """The reply for a call that returned; ``value`` is already pickled."""
    return _RETURNED + number + value


def encode_raised(
    number: bytes, error: BaseException, traceback: str, pickled: bytes | None
) -> bytes:
    """The reply for a call that raised ``error``; ``pickled`` is it pickled, or None."""
    header = {
        "type": _pickling.type_name(type(error)),
        "text": str(error),
        "traceback": traceback,
        "exception": isinstance(error, Exception),
    }
    return _RAISED + number + json.dumps(header).encode() + b"\n" + (pickled or b"")


def encode_failed(number: bytes, error: FlameError) -> bytes:
    body = {"code": error.code.name, "message": error.message}
    return _FAILED + number + json.dumps(body).encode()


def encode_versions(versions: Versions, function: str) -> bytes:
    body = versions._to_json()
    body["function"] = function
    return _VERSIONS + json.dumps(body).encode()


def decode_reply(data: bytes | None) -> Returned | Raised | Failed | tuple[Versions, str]:
    """A task's output, read; FormatError for output that is not a reply."""
    data = data or b""
    kind = data[:1]
    try:
        if kind == _VERSIONS:
            fields = json.loads(data[1:])
            return Versions._from_json(fields), str(fields.get("function", "?"))
        if len(data) < 1 + _NUMBER or kind not in (_RETURNED, _RAISED, _FAILED):
            raise FormatError(f"it starts {data[:16]!r}")
        index = int.from_bytes(data[1 : 1 + _NUMBER], "big")
        body = data[1 + _NUMBER :]
        if kind == _RETURNED:
            return Returned(index, body)
        if kind == _FAILED:
            fields = json.loads(body)
            code = FlameErrorCode.__members__.get(str(fields["code"]), FlameErrorCode.INTERNAL)
            return Failed(index, code, str(fields["message"]))
        line_end = body.find(b"\n")
        if line_end < 0:
            raise FormatError("an exception without its header line")
        fields = json.loads(body[:line_end])
        return Raised(
            index,
            str(fields["type"]),
            str(fields["text"]),
            str(fields["traceback"]),
            bool(fields["exception"]),
            body[line_end + 1 :],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"a reply that does not parse ({exc})") from None
