"""Checking a request against the types its wire declares, for any server.

The generated decoders trust the bytes: a string field sent as a varint
decodes to an ``int``, a number sent length-delimited to ``bytes`` or a list,
a message field sent as a varint to an ``int``; a field of wire type 3, 4, 6
or 7 decodes to ``None``, and a length that runs past the end is cut short.
Such a message looks valid until something uses it (encodes it, compares it,
stores it) and fails far from the request that brought it. A server reads
its requests with :func:`checked` instead, which refuses them at once, naming
the field and what it should hold::

    decode = checked(pb.RegisterApplicationRequest)
    request = decode(data)  # WireTypeError (a ValueError) for a wrong-typed field

Two checks, both driven by the generated class's field metadata and
annotations, recursively through message fields:

* :func:`check_wire`, on the bytes: every field the class knows arrives with
  a wire type its type can have (a varint for integers, bools and enums;
  8 or 4 bytes for fixed-width numbers; length-delimited for strings, bytes,
  messages, maps, and packed repeated numbers), strings are UTF-8, nothing
  is cut short, and no field has one of the wire types proto3 never uses.
  Fields the class does not know are skipped, as the decoder skips them.
* :func:`check_message`, on the decoded message (or one built in code):
  every value has the Python type of its field (``str``, ``bytes``, ``int``
  but not ``bool``, ``bool``, ``float``, the enum's or message's class);
  integers fit their protobuf type (int32, uint64, ...); a repeated field is
  a list and a map a dict, each element checked; only a field with explicit
  presence (``optional``, a message, a oneof member) is ``None``; a oneof has
  at most one member set.

Enum numbers the generated enum does not name are let through: proto3 enums
are open, and a newer peer may send a value this code does not know; the
handler that uses the value decides.

Nothing here knows a transport: a server calls it where it reads a request,
and answers :class:`WireTypeError` (or any ``ValueError`` of the decoder)
with ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import betterproto2

__all__ = ["WireTypeError", "check_message", "check_wire", "checked"]

M = TypeVar("M", bound=betterproto2.Message)


class WireTypeError(ValueError):
    """Raised by the checks of this module: a field holds what its type cannot.

    ``field`` is the dotted path of the field from the message checked
    (``application.command``, ``arguments[2]``), ``expected`` what it should
    hold.
    """

    def __init__(self, message_name: str, field: str, expected: str, found: str) -> None:
        super().__init__(
            f"{message_name}.{field} should be {expected}, but the message carries {found} there"
        )
        self.message_name = message_name
        self.field = field
        self.expected = expected


# --------------------------------------------------------------------------
# What each field must be, read once per class

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5

_WIRE_NAMES = {
    0: "a varint (wire type 0)",
    1: "an 8-byte number (wire type 1)",
    2: "a length-delimited value (wire type 2)",
    3: "a group start (wire type 3)",
    4: "a group end (wire type 4)",
    5: "a 4-byte number (wire type 5)",
    6: "wire type 6, which does not exist",
    7: "wire type 7, which does not exist",
}

_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT32 = (0, (1 << 32) - 1)
_UINT64 = (0, (1 << 64) - 1)

#: Each scalar protobuf type: its wire type, and the range of an integer one.
_SCALARS: dict[str, tuple[int, tuple[int, int] | None]] = {
    betterproto2.TYPE_INT32: (_VARINT, _INT32),
    betterproto2.TYPE_SINT32: (_VARINT, _INT32),
    betterproto2.TYPE_ENUM: (_VARINT, _INT32),
    betterproto2.TYPE_UINT32: (_VARINT, _UINT32),
    betterproto2.TYPE_INT64: (_VARINT, _INT64),
    betterproto2.TYPE_SINT64: (_VARINT, _INT64),
    betterproto2.TYPE_UINT64: (_VARINT, _UINT64),
    betterproto2.TYPE_BOOL: (_VARINT, None),
    betterproto2.TYPE_SFIXED32: (_FIXED32, _INT32),
    betterproto2.TYPE_FIXED32: (_FIXED32, _UINT32),
    betterproto2.TYPE_FLOAT: (_FIXED32, None),
    betterproto2.TYPE_SFIXED64: (_FIXED64, _INT64),
    betterproto2.TYPE_FIXED64: (_FIXED64, _UINT64),
    betterproto2.TYPE_DOUBLE: (_FIXED64, None),
}


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


@dataclasses.dataclass(frozen=True)
class _Value:
    """What one value of a field (or of a list or map of them) must be."""

    kind: type  # str, bytes, int, bool, float, an enum or a message class
    proto_type: str

    @property
    def wire(self) -> int:
        """The wire type of one value."""
        scalar = _SCALARS.get(self.proto_type)
        return _LEN if scalar is None else scalar[0]

    def describe(self) -> str:
        if self.kind is str:
            return "a string"
        if self.kind is bytes:
            return "bytes"
        if self.kind is bool:
            return "a bool"
        if issubclass(self.kind, enum.Enum):
            return f"{_a(self.kind.__name__)} (an enum number)"
        if issubclass(self.kind, betterproto2.Message):
            return f"{_a(self.kind.__name__)} message"
        return _a(self.proto_type)

    def fits(self, value: Any) -> bool:
        kind = self.kind
        if kind is float:
            return type(value) is not bool and isinstance(value, (float, int))
        if kind is int or issubclass(kind, enum.IntEnum):
            if type(value) is bool or not isinstance(value, kind):
                return False
            scalar = _SCALARS.get(self.proto_type)
            bounds = None if scalar is None else scalar[1]
            return bounds is None or bounds[0] <= value <= bounds[1]
        return isinstance(value, kind)


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    number: int
    value: _Value
    shape: str  # "one", "list" or "map"
    nullable: bool
    key: _Value | None = None  # of a map
    group: str | None = None

    @property
    def wires(self) -> tuple[int, ...]:
        """The wire types the field may arrive with."""
        wire = self.value.wire
        if self.shape == "list" and wire != _LEN:
            return (wire, _LEN)  # a repeated number, one by one or packed
        if self.shape == "map":
            return (_LEN,)
        return (wire,)

    def describe(self) -> str:
        if self.shape == "list":
            return f"a list of {_plural(self.value)}"
        if self.shape == "map":
            return "a map"
        return self.value.describe()


def _plural(value: _Value) -> str:
    if value.kind is str:
        return "strings"
    if issubclass(value.kind, betterproto2.Message):
        return f"{value.kind.__name__} messages"
    if issubclass(value.kind, enum.Enum):
        return f"{value.kind.__name__} values"
    return f"{value.proto_type} values"


def _strip_none(hint: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def _kind(hint: Any) -> type:
    if isinstance(hint, type):
        return hint
    raise TypeError(f"cannot check a field annotated {hint!r}")


_plans: dict[type, tuple[_Field, ...]] = {}
_numbers: dict[type, dict[int, _Field]] = {}


def _plan(cls: type) -> tuple[_Field, ...]:
    """The fields of a generated message class, from its metadata and annotations."""
    plan = _plans.get(cls)
    if plan is not None:
        return plan
    hints = typing.get_type_hints(cls)
    fields = []
    for field in dataclasses.fields(cls):
        meta = field.metadata.get("betterproto")
        if not isinstance(meta, betterproto2.FieldMetadata):
            continue
        hint, nullable = _strip_none(hints[field.name])
        key: _Value | None = None
        if meta.proto_type == betterproto2.TYPE_MAP:
            assert meta.map_meta is not None
            key_hint, value_hint = typing.get_args(hint)
            key_meta, value_meta = meta.map_meta
            key = _Value(_kind(key_hint), key_meta.proto_type)
            value = _Value(_kind(value_hint), value_meta.proto_type)
            shape = "map"
        elif typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            value = _Value(_kind(item), meta.proto_type)
            shape = "list"
        else:
            value = _Value(_kind(hint), meta.proto_type)
            shape = "one"
        nullable = nullable or bool(meta.optional) or meta.group is not None
        fields.append(_Field(field.name, meta.number, value, shape, nullable, key, meta.group))
    plan = tuple(fields)
    _plans[cls] = plan
    _numbers[cls] = {field.number: field for field in plan}
    return plan


def _by_number(cls: type) -> dict[int, _Field]:
    numbers = _numbers.get(cls)
    if numbers is None:
        _plan(cls)
        numbers = _numbers[cls]
    return numbers


# --------------------------------------------------------------------------
# The bytes


class _Cut(ValueError):
    pass


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _Cut("the message ends inside a number")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("the message holds a number longer than 10 bytes")


def check_wire(cls: type[betterproto2.Message], data: bytes) -> None:
    """Raise :class:`WireTypeError` (or ``ValueError``) unless ``data`` fits ``cls``."""
    _scan(data, 0, len(data), _by_number(cls), cls.__name__, "")


def _scan(
    data: bytes, pos: int, end: int, fields: dict[int, _Field], root: str, prefix: str
) -> None:
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        field = fields.get(number)
        if wire == _VARINT:
            start = pos
            _, pos = _varint(data, pos, end)
        elif wire == _LEN:
            size, start = _varint(data, pos, end)
            pos = start + size
        elif wire in (_FIXED64, _FIXED32):
            start = pos
            pos += 8 if wire == _FIXED64 else 4
        else:
            where = f"{prefix}{field.name}" if field is not None else f"{prefix}<field {number}>"
            raise WireTypeError(root, where, "a field of a proto3 wire type", _WIRE_NAMES[wire])
        if pos > end:
            raise _Cut("the message ends inside a field")
        if field is None:
            continue  # unknown here: skipped, as the decoder skips it
        path = prefix + field.name
        if wire not in field.wires:
            raise WireTypeError(root, path, field.describe(), _WIRE_NAMES[wire])
        if wire != _LEN:
            continue
        value = field.value
        if field.shape == "map":
            assert field.key is not None
            entry = {
                1: _Field("key", 1, field.key, "one", True),
                2: _Field("value", 2, value, "one", True),
            }
            _scan(data, start, pos, entry, root, f"{path}[].")
        elif field.shape == "list" and value.wire != _LEN:
            _scan_packed(data, start, pos, value.wire, root, path)
        elif value.kind is str:
            try:
                data[start:pos].decode("utf-8")
            except UnicodeDecodeError:
                raise WireTypeError(root, path, "UTF-8 text", "bytes that are not UTF-8") from None
        elif issubclass(value.kind, betterproto2.Message):
            _scan(data, start, pos, _by_number(value.kind), root, path + ".")


def _scan_packed(data: bytes, pos: int, end: int, wire: int, root: str, path: str) -> None:
    if wire == _VARINT:
        while pos < end:
            _, pos = _varint(data, pos, end)
        return
    width = 8 if wire == _FIXED64 else 4
    if (end - pos) % width:
        raise WireTypeError(
            root, path, f"packed {width}-byte numbers", f"{end - pos} bytes, not a multiple"
        )


# --------------------------------------------------------------------------
# The decoded message


def _describe_found(value: Any) -> str:
    if value is None:
        return "nothing (None)"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, enum.Enum):
        return _a(type(value).__name__)
    if isinstance(value, int):
        return f"a number ({value})" if -(10**6) < value < 10**6 else "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} raw bytes"
    if isinstance(value, float):
        return "a floating-point number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, betterproto2.Message):
        return f"{_a(type(value).__name__)} message"
    return _a(type(value).__name__)


def check_message(message: betterproto2.Message) -> None:
    """Raise :class:`WireTypeError` for the first field of ``message`` not of its type."""
    _check(message, type(message).__name__, "")


def _check(message: betterproto2.Message, root: str, prefix: str) -> None:
    groups: dict[str, list[str]] | None = None
    for field in _plan(type(message)):
        value = getattr(message, field.name)
        path = prefix + field.name
        if value is None:
            if not field.nullable:
                raise WireTypeError(root, path, field.describe(), "nothing (None)")
            continue
        if field.group is not None:
            if groups is None:
                groups = {}
            groups.setdefault(field.group, []).append(field.name)
        expected = field.value
        if field.shape == "one":
            _check_value(expected, value, root, path)
        elif field.shape == "list":
            if not isinstance(value, list):
                raise WireTypeError(root, path, field.describe(), _describe_found(value))
            for index, item in enumerate(value):
                _check_value(expected, item, root, f"{path}[{index}]")
        else:
            assert field.key is not None
            if not isinstance(value, dict):
                raise WireTypeError(root, path, "a map", _describe_found(value))
            for item_key, item in value.items():
                _check_value(field.key, item_key, root, f"{path} (a key)")
                _check_value(expected, item, root, f"{path}[{item_key!r}]")
    if groups:
        for group, names in groups.items():
            if len(names) > 1:
                raise WireTypeError(
                    root, prefix + group, "one of its fields at most", f"{', '.join(names)}"
                )


def _check_value(expected: _Value, value: Any, root: str, path: str) -> None:
    if not expected.fits(value):
        raise WireTypeError(root, path, expected.describe(), _describe_found(value))
    if isinstance(value, betterproto2.Message):
        _check(value, root, path + ".")


# --------------------------------------------------------------------------
# Both, around the generated decoder


def checked(cls: type[M]) -> Callable[[bytes], M]:
    """A decoder of ``cls`` that refuses, with ``ValueError``, whatever does not fit its types.

    :func:`check_wire` on the bytes, the generated decoder, then
    :func:`check_message` on what it gives.
    """
    parse = cls.parse

    def decode(data: bytes) -> M:
        check_wire(cls, data)
        message = parse(data)
        check_message(message)
        return message

    decode.__qualname__ = f"checked({cls.__name__})"
    return decode
