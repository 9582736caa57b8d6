"""A fast codec for the messages sent once or more per task, shared by client and cluster.

Every task crosses the wire several times (CreateTask and its answer, the
WatchTask request and the watch's messages), and the generic codec of the
generated code spends several times longer on each ``Task``
(``benchmarks/codec.py``). Here the few messages of that path are written
out by hand, for their handful of fields:

* :func:`encode_task`, which writes a ``Task`` of any wire, and
  :class:`HandEncodedTask`, a mixin for a subclass of a wire's generated
  ``Task`` that encodes itself so (:class:`WireTask` is v0.4's);
  :func:`encode_task_fields` writes the same bytes from plain values, for
  the cluster, which keeps tasks in records of its own;
* :func:`decode_task`, which the client reads a ``Task`` of any wire with,
  into the flat :class:`TaskFields`;
* :func:`encode_create_task` and :func:`encode_task_request`, the client's
  requests (CreateTask; GetTask and WatchTask share their fields), and
  :func:`decode_create_task`, :func:`decode_get_task` and
  :func:`decode_watch_task`, with which the cluster reads them.

One codec serves every wire because these messages have the same field
numbers on v0.4, v0.5 and v0.6, but for three differences: ``TaskStatus``
has ``repeated Event events = 4`` from v0.5 on (``Event``: ``int32 code =
1``, ``optional string message = 2``, ``int64 creation_time = 3``),
``TaskState`` has ``Cancelled = 4`` from v0.6 on, and ``Metadata`` has
``optional string owner = 3`` on v0.4 and v0.5 only. The codec writes what a
message holds and reads whatever the bytes carry; what a number means (a
state, seconds or milliseconds) is for its callers to say.

The tests check each function against the generated code of every wire: the
same bytes out, the same fields in, for any message.

Proto3 rules, as the generated code applies them: a plain scalar field is
left out when it holds its default (0, ""), an ``optional`` one whenever it
is None, a message field whenever it is None; fields go in number order. A
reader takes fields in any order, the last of a repeated scalar, merges a
repeated message field, and skips fields it does not know.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ._proto.v04 import flame as pb

__all__ = [
    "HandEncodedTask",
    "TaskEvent",
    "TaskFields",
    "WireTask",
    "decode_create_task",
    "decode_get_task",
    "decode_task",
    "decode_watch_task",
    "encode_create_task",
    "encode_task",
    "encode_task_fields",
    "encode_task_request",
]


# Keys (field number << 3 | wire type) of the fields below. Every number is
# below 16, so every key is one byte: the encoders write it from _BYTE, the
# readers compare the byte they find, and fall back to a general reading
# (a longer key, an unknown field, a wrong wire type) only for other bytes.
_VARINT, _LEN = 0, 2


def _key(number: int, wire: int) -> int:
    return number << 3 | wire


_TASK_METADATA = _key(1, _LEN)
_TASK_SPEC = _key(2, _LEN)
_TASK_STATUS = _key(3, _LEN)
_METADATA_ID = _key(1, _LEN)
_METADATA_NAME = _key(2, _LEN)
_METADATA_OWNER = _key(3, _LEN)  # v0.4 and v0.5
_SPEC_SESSION_ID = _key(2, _LEN)
_SPEC_INPUT = _key(3, _LEN)
_SPEC_OUTPUT = _key(4, _LEN)
_STATUS_STATE = _key(1, _VARINT)
_STATUS_CREATION_TIME = _key(2, _VARINT)
_STATUS_COMPLETION_TIME = _key(3, _VARINT)
_STATUS_EVENT = _key(4, _LEN)  # v0.5 and v0.6
_EVENT_CODE = _key(1, _VARINT)
_EVENT_MESSAGE = _key(2, _LEN)
_EVENT_CREATION_TIME = _key(3, _VARINT)
_CREATE_TASK_TASK = _key(1, _LEN)
_TASK_REQUEST_TASK_ID = _key(1, _LEN)
_TASK_REQUEST_SESSION_ID = _key(2, _LEN)

_BYTE = [bytes((value,)) for value in range(0x80)]  # a varint below 0x80 is one byte


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return _BYTE[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(key: int, data: bytes) -> bytes:
    size = len(data)
    return _BYTE[key] + (_BYTE[size] if size < 0x80 else _varint(size)) + data


def _metadata(m: Any) -> bytes:
    out = b""
    if m.id:
        out += _delimited(_METADATA_ID, m.id.encode())
    if m.name:
        out += _delimited(_METADATA_NAME, m.name.encode())
    owner = getattr(m, "owner", None)  # v0.6's Metadata has none
    if owner is not None:
        out += _delimited(_METADATA_OWNER, owner.encode())
    return out


def _spec(s: Any) -> bytes:
    out = b""
    if s.session_id:
        out += _delimited(_SPEC_SESSION_ID, s.session_id.encode())
    if s.input is not None:
        out += _delimited(_SPEC_INPUT, s.input)
    if s.output is not None:
        out += _delimited(_SPEC_OUTPUT, s.output)
    return out


def _event(e: Any) -> bytes:
    out = b""
    if e.code:
        out += _BYTE[_EVENT_CODE] + _varint(e.code)
    if e.message is not None:
        out += _delimited(_EVENT_MESSAGE, e.message.encode())
    if e.creation_time:
        out += _BYTE[_EVENT_CREATION_TIME] + _varint(e.creation_time)
    return out


def _status(s: Any) -> bytes:
    out = b""
    state = int(s.state)
    if state:
        out += _BYTE[_STATUS_STATE] + _varint(state)
    if s.creation_time:
        out += _BYTE[_STATUS_CREATION_TIME] + _varint(s.creation_time)
    if s.completion_time is not None:
        out += _BYTE[_STATUS_COMPLETION_TIME] + _varint(s.completion_time)
    events = getattr(s, "events", None)  # v0.4's TaskStatus has none
    if events:
        for event in events:
            out += _delimited(_STATUS_EVENT, _event(event))
    return out


def encode_task(task: Any) -> bytes:
    """The protobuf encoding of ``task``, the same bytes as ``bytes(task)``.

    ``task`` is a generated ``Task`` of any wire, or of a subclass: it is
    read field by field, events and owner included where its wire has them.
    """
    out = b""
    if task.metadata is not None:
        out += _delimited(_TASK_METADATA, _metadata(task.metadata))
    if task.spec is not None:
        out += _delimited(_TASK_SPEC, _spec(task.spec))
    if task.status is not None:
        out += _delimited(_TASK_STATUS, _status(task.status))
    return out


def encode_task_fields(
    task_id: str,
    session_id: str,
    data: bytes | None,
    output: bytes | None,
    state: int,
    creation_time: int,
    completion_time: int | None,
    events: Sequence[tuple[int, str | None, int]] = (),
) -> bytes:
    """The encoding of a ``Task`` given by its fields, with metadata, spec and status all set.

    The bytes :func:`encode_task` writes for the generated ``Task`` of any
    wire holding the same values (``name`` equal to ``id``, no ``owner``);
    ``events`` are (code, message, creation time) and need a wire that has
    them (v0.5, v0.6). For a server that keeps tasks in records of its own:
    no message is built to be encoded.
    """
    ident = task_id.encode()
    size = len(ident)
    head = _BYTE[size] if size < 0x80 else _varint(size)
    metadata = _BYTE[_METADATA_ID] + head + ident + _BYTE[_METADATA_NAME] + head + ident
    spec = b""
    if session_id:
        spec = _delimited(_SPEC_SESSION_ID, session_id.encode())
    if data is not None:
        spec += _delimited(_SPEC_INPUT, data)
    if output is not None:
        spec += _delimited(_SPEC_OUTPUT, output)
    status = _BYTE[_STATUS_STATE] + _varint(state) if state else b""
    if creation_time:
        status += _BYTE[_STATUS_CREATION_TIME] + _varint(creation_time)
    if completion_time is not None:
        status += _BYTE[_STATUS_COMPLETION_TIME] + _varint(completion_time)
    for code, message, at in events:
        event = _BYTE[_EVENT_CODE] + _varint(code) if code else b""
        if message is not None:
            event += _delimited(_EVENT_MESSAGE, message.encode())
        if at:
            event += _BYTE[_EVENT_CREATION_TIME] + _varint(at)
        status += _delimited(_STATUS_EVENT, event)
    return (
        _delimited(_TASK_METADATA, metadata if ident else b"")
        + _delimited(_TASK_SPEC, spec)
        + _delimited(_TASK_STATUS, status)
    )


class HandEncodedTask:
    """Mixin for a subclass of a generated ``Task``: it encodes itself with :func:`encode_task`.

    Put it first among the bases: ``class WireTask(HandEncodedTask, pb.Task)``.
    The subclass may live outside the generated code: betterproto2 looks its
    field types up by name in the module that defines the class, so this
    mixin points it at the module of the generated ``Task``.
    """

    def SerializeToString(self) -> bytes:
        return encode_task(self)

    def __bytes__(self) -> bytes:
        return encode_task(self)

    @classmethod
    def _type_hints(cls) -> dict[str, Any]:
        hints: dict[str, Any] = _generated_class(cls)._type_hints()
        return hints


def _v04() -> ModuleType:
    """v0.4's generated module, imported when first needed: ``import flame`` loads none."""
    return importlib.import_module("._proto.v04.flame", __package__)


if TYPE_CHECKING:

    @dataclass(eq=False, repr=False)
    class WireTask(HandEncodedTask, pb.Task):  # type: ignore[misc]
        """A v0.4 ``pb.Task`` that encodes itself with :func:`encode_task`."""

else:

    def __getattr__(name: str) -> Any:
        # WireTask derives from v0.4's generated Task: made on first use.
        if name != "WireTask":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

        @dataclass(eq=False, repr=False)
        class WireTask(HandEncodedTask, _v04().Task):
            """A v0.4 ``pb.Task`` that encodes itself with :func:`encode_task`."""

        WireTask.__module__ = __name__
        WireTask.__qualname__ = "WireTask"
        globals()["WireTask"] = WireTask
        return WireTask


_GENERATED = __name__.rpartition(".")[0] + "._proto."


def _generated_class(cls: type) -> type[Any]:
    """The generated class ``cls`` is, or derives from."""
    for base in cls.__mro__:
        if base.__module__.startswith(_GENERATED):
            return base
    raise TypeError(f"{cls.__qualname__} is not a generated class, nor derived from one")


# --------------------------------------------------------------------------
# Requests of the client


def encode_create_task(session_id: str, data: bytes | None) -> bytes:
    """``bytes(pb.CreateTaskRequest(task=pb.TaskSpec(session_id=..., input=data)))``, any wire."""
    spec = b""
    if session_id:
        spec += _delimited(_SPEC_SESSION_ID, session_id.encode())
    if data is not None:
        spec += _delimited(_SPEC_INPUT, data)
    return _delimited(_CREATE_TASK_TASK, spec)


def encode_task_request(task_id: str, session_id: str) -> bytes:
    """The bytes of a ``GetTaskRequest`` or a ``WatchTaskRequest`` of any wire: two fields."""
    out = b""
    if task_id:
        out += _delimited(_TASK_REQUEST_TASK_ID, task_id.encode())
    if session_id:
        out += _delimited(_TASK_REQUEST_SESSION_ID, session_id.encode())
    return out


# --------------------------------------------------------------------------
# Reading a Task


class TaskEvent(NamedTuple):
    """One ``Event`` of a task's status (v0.5 and v0.6), as raw numbers."""

    code: int  # the TaskState number the task entered, on both wires
    message: str | None
    creation_time: int  # seconds on v0.5, milliseconds on v0.6


class TaskFields:
    """The fields of one ``Task`` message of any wire, flat; what :func:`decode_task` gives.

    ``has_metadata``, ``has_spec`` and ``has_status`` say whether the message
    carried each part; the fields of a missing part keep their defaults.
    ``state`` is the raw number of the ``TaskState``; ``events`` are the
    status's events in the order they came (none on v0.4); ``owner`` is set
    only by a v0.4 or v0.5 message that carried it.
    """

    __slots__ = (
        "completion_time",
        "creation_time",
        "events",
        "has_metadata",
        "has_spec",
        "has_status",
        "id",
        "input",
        "name",
        "output",
        "owner",
        "session_id",
        "state",
    )

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.owner: str | None = None
        self.session_id = ""
        self.input: bytes | None = None
        self.output: bytes | None = None
        self.state = 0
        self.creation_time = 0
        self.completion_time: int | None = None
        self.events: tuple[TaskEvent, ...] = ()
        self.has_metadata = False
        self.has_spec = False
        self.has_status = False

    @property
    def finished(self) -> bool:
        """Whether the task is in a final state: Succeed, Failed or (v0.6) Cancelled."""
        return 2 <= self.state <= 4

    def to_pb(self, cls: type[Any] | None = None) -> Any:
        """The task as a message of ``cls``: a wire's generated ``Task``, or a subclass of one.

        ``cls`` is v0.4's ``Task`` unless given.

        It is what ``cls.parse`` makes of the same bytes: a field ``cls``'s
        wire lacks (``owner`` on v0.6, ``events`` on v0.4) is left out.
        """
        if cls is None:
            cls = _v04().Task
        parts = _task_parts(cls)
        metadata = status = None
        if self.has_metadata:
            if parts.has_owner:
                metadata = parts.metadata(id=self.id, name=self.name, owner=self.owner)
            else:
                metadata = parts.metadata(id=self.id, name=self.name)
        if self.has_status:
            status = parts.status(
                state=parts.state(self.state),
                creation_time=self.creation_time,
                completion_time=self.completion_time,
            )
            if parts.event is not None:
                status.events = [
                    parts.event(code=e.code, message=e.message, creation_time=e.creation_time)
                    for e in self.events
                ]
        spec = (
            parts.spec(session_id=self.session_id, input=self.input, output=self.output)
            if self.has_spec
            else None
        )
        return cls(metadata=metadata, spec=spec, status=status)


class _TaskParts(NamedTuple):
    """The generated classes a wire's ``Task`` is made of."""

    metadata: Any
    spec: Any
    status: Any
    state: Any
    event: Any  # None on v0.4
    has_owner: bool


_parts_by_class: dict[type, _TaskParts] = {}


def _task_parts(cls: type) -> _TaskParts:
    parts = _parts_by_class.get(cls)
    if parts is None:
        generated = sys.modules[_generated_class(cls).__module__]
        parts = _TaskParts(
            metadata=generated.Metadata,
            spec=generated.TaskSpec,
            status=generated.TaskStatus,
            state=generated.TaskState,
            event=getattr(generated, "Event", None),
            has_owner="owner" in generated.Metadata.__dataclass_fields__,
        )
        _parts_by_class[cls] = parts
    return parts


class _Truncated(ValueError):
    pass


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos >= end:
        raise _Truncated("a Task message ends inside a number")
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    result = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        if pos >= end:
            raise _Truncated("a Task message ends inside a number")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift > 63:
            raise ValueError("a Task message holds a number longer than 10 bytes")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _length(data: bytes, pos: int, end: int) -> tuple[int, int]:
    size, pos = _read_varint(data, pos, end)
    stop = pos + size
    if stop > end:
        raise _Truncated("a Task message ends inside a field")
    return pos, stop


def _skip(data: bytes, pos: int, end: int, wire: int) -> int:
    if wire == 0:
        return _read_varint(data, pos, end)[1]
    if wire == 2:
        return _length(data, pos, end)[1]
    size = 8 if wire == 1 else 4 if wire == 5 else -1
    if size < 0 or pos + size > end:
        raise ValueError(f"a Task message holds a field of wire type {wire}, which it cannot")
    return pos + size


#: The fields each reader knows, by number: a refusal names the field.
_FIELD_NAMES: dict[str, dict[int, str]] = {
    "Task": {1: "metadata", 2: "spec", 3: "status"},
    "Metadata": {1: "id", 2: "name", 3: "owner"},
    "TaskSpec": {2: "session_id", 3: "input", 4: "output"},
    "TaskStatus": {1: "state", 2: "creation_time", 3: "completion_time", 4: "events"},
    "Event": {1: "code", 2: "message", 3: "creation_time"},
}


def _other(data: bytes, pos: int, end: int, key: int, message: str) -> int:
    """Past a field no reader matched by its key: unknown, or known with the wrong wire type."""
    name = _FIELD_NAMES[message].get(key >> 3)
    if name is not None:
        raise ValueError(
            f"{message}.{name} arrived with wire type {key & 7}, which its type cannot have"
        )
    return _skip(data, pos, end, key & 7)


def _read_metadata(task: TaskFields, data: bytes, pos: int, end: int) -> None:
    task.has_metadata = True
    while pos < end:
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(data, pos, end)
        if key == _METADATA_ID:
            start, pos = _length(data, pos, end)
            task.id = data[start:pos].decode()
        elif key == _METADATA_NAME:
            start, pos = _length(data, pos, end)
            task.name = data[start:pos].decode()
        elif key == _METADATA_OWNER:
            start, pos = _length(data, pos, end)
            task.owner = data[start:pos].decode()
        else:
            pos = _other(data, pos, end, key, "Metadata")


def _read_spec(task: TaskFields, data: bytes, pos: int, end: int) -> None:
    task.has_spec = True
    while pos < end:
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(data, pos, end)
        if key == _SPEC_SESSION_ID:
            start, pos = _length(data, pos, end)
            task.session_id = data[start:pos].decode()
        elif key == _SPEC_INPUT:
            start, pos = _length(data, pos, end)
            task.input = data[start:pos]
        elif key == _SPEC_OUTPUT:
            start, pos = _length(data, pos, end)
            task.output = data[start:pos]
        else:
            pos = _other(data, pos, end, key, "TaskSpec")


def _read_status(task: TaskFields, data: bytes, pos: int, end: int) -> None:
    task.has_status = True
    while pos < end:
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(data, pos, end)
        if key == _STATUS_STATE:
            value, pos = _read_varint(data, pos, end)
            task.state = _signed(value) if value >= 1 << 63 else value & 0xFFFFFFFF
        elif key == _STATUS_CREATION_TIME:
            value, pos = _read_varint(data, pos, end)
            task.creation_time = _signed(value)
        elif key == _STATUS_COMPLETION_TIME:
            value, pos = _read_varint(data, pos, end)
            task.completion_time = _signed(value)
        elif key == _STATUS_EVENT:
            start, pos = _length(data, pos, end)
            task.events += (_read_event(data, start, pos),)
        else:
            pos = _other(data, pos, end, key, "TaskStatus")


# A NamedTuple's own constructor costs twice this.
_new_event = tuple.__new__


def _read_event(data: bytes, pos: int, end: int) -> TaskEvent:
    code = creation_time = 0
    message = None
    while pos < end:
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(data, pos, end)
        if key == _EVENT_CODE:
            value, pos = _read_varint(data, pos, end)
            value &= 0xFFFFFFFF  # an int32: its low 32 bits, signed
            code = value - (1 << 32) if value >= 1 << 31 else value
        elif key == _EVENT_MESSAGE:
            start, pos = _length(data, pos, end)
            message = data[start:pos].decode()
        elif key == _EVENT_CREATION_TIME:
            value, pos = _read_varint(data, pos, end)
            creation_time = _signed(value)
        else:
            pos = _other(data, pos, end, key, "Event")
    return _new_event(TaskEvent, (code, message, creation_time))


_PARTS = {_TASK_METADATA: _read_metadata, _TASK_SPEC: _read_spec, _TASK_STATUS: _read_status}


def decode_task(data: bytes) -> TaskFields:
    """Read a ``Task`` message of any wire; ValueError if ``data`` is not one."""
    task = TaskFields()
    pos, end = 0, len(data)
    while pos < end:
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(data, pos, end)
        read = _PARTS.get(key)
        if read is None:
            pos = _other(data, pos, end, key, "Task")
            continue
        start, pos = _length(data, pos, end)
        read(task, data, start, pos)
    return task


# --------------------------------------------------------------------------
# Reading the client's requests (the cluster's side)


def _delimited_fields(data: bytes, message: str, known: dict[int, str]) -> dict[int, list[bytes]]:
    """Every length-delimited field of a request, by number; others are skipped.

    ``known`` names the fields of ``message`` (all of them length-delimited):
    one of them arriving with another wire type is refused.
    """
    found: dict[int, list[bytes]] = {}
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if wire != _LEN:
            if number in known:
                raise ValueError(
                    f"{message}.{known[number]} should be length-delimited (wire type 2), "
                    f"but the message carries it with wire type {wire}"
                )
            pos = _skip(data, pos, end, wire)
            continue
        start, pos = _length(data, pos, end)
        found.setdefault(number, []).append(data[start:pos])
    return found


def _text(found: dict[int, list[bytes]], number: int) -> str:
    values = found.get(number)
    if values is None:
        return ""
    # The last one counts, but every one must be text, as a generated
    # decoder reads (and refuses) each in turn.
    for value in values[:-1]:
        value.decode()
    return values[-1].decode()


def decode_create_task(data: bytes) -> pb.CreateTaskRequest:
    """Read a ``CreateTaskRequest``; ValueError if ``data`` is not one."""
    pb = _v04()
    parts = _delimited_fields(data, "CreateTaskRequest", {1: "task"}).get(1)
    if parts is None:
        return pb.CreateTaskRequest()
    # A message field seen more than once is merged: read its parts in turn.
    task = TaskFields()
    for part in parts:
        _read_spec(task, part, 0, len(part))
    return pb.CreateTaskRequest(
        task=pb.TaskSpec(session_id=task.session_id, input=task.input, output=task.output)
    )


_TASK_REQUEST_FIELDS = {1: "task_id", 2: "session_id"}


def decode_get_task(data: bytes) -> pb.GetTaskRequest:
    """Read a ``GetTaskRequest``; ValueError if ``data`` is not one."""
    found = _delimited_fields(data, "GetTaskRequest", _TASK_REQUEST_FIELDS)
    return _v04().GetTaskRequest(task_id=_text(found, 1), session_id=_text(found, 2))


def decode_watch_task(data: bytes) -> pb.WatchTaskRequest:
    """Read a ``WatchTaskRequest``; ValueError if ``data`` is not one."""
    found = _delimited_fields(data, "WatchTaskRequest", _TASK_REQUEST_FIELDS)
    return _v04().WatchTaskRequest(task_id=_text(found, 1), session_id=_text(found, 2))
