"""A fast codec for the messages sent once or more per task, shared by client and cluster.

Every task crosses the wire several times (CreateTask and its answer, the
WatchTask request and the watch's messages), and the generic codec of the
generated code spends about 0.1 ms on each ``Task``. Here the few messages of
that path are written out by hand, for their handful of fields:

* :func:`encode_task` and :class:`WireTask` (a ``pb.Task`` that encodes
  itself so), which the cluster sends;
* :func:`decode_task`, which the client reads a ``Task`` with, into the flat
  :class:`TaskFields`;
* :func:`encode_create_task` and :func:`encode_task_request`, the client's
  requests (CreateTask; GetTask and WatchTask share their fields), and
  :func:`decode_create_task`, :func:`decode_get_task` and
  :func:`decode_watch_task`, with which the cluster reads them.

The tests check each against the generated code: the same bytes out, the
same fields in, for any message.

Proto3 rules, as the generated code applies them: a plain scalar field is
left out when it holds its default (0, ""), an ``optional`` one whenever it
is None, a message field whenever it is None; fields go in number order. A
reader takes fields in any order, the last of a repeated scalar, merges a
repeated message field, and skips fields it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._proto.v04 import flame as pb

# The generated classes resolve their field types by name in the defining
# module's namespace: a subclass defined here needs the same names in scope.
from ._proto.v04.flame import Metadata, TaskSpec, TaskStatus  # noqa: F401

__all__ = [
    "TaskFields",
    "WireTask",
    "decode_create_task",
    "decode_get_task",
    "decode_task",
    "decode_watch_task",
    "encode_create_task",
    "encode_task",
    "encode_task_request",
]


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(key: int, data: bytes) -> bytes:
    size = len(data)
    return bytes((key,)) + (bytes((size,)) if size < 0x80 else _varint(size)) + data


# Keys (field number << 3 | wire type) of the fields below: all below 0x80.
_LEN = 2


def _key(number: int, wire: int) -> int:
    return (number << 3) | wire


def _metadata(m: pb.Metadata) -> bytes:
    out = b""
    if m.id:
        out += _delimited(_key(1, _LEN), m.id.encode())
    if m.name:
        out += _delimited(_key(2, _LEN), m.name.encode())
    if m.owner is not None:
        out += _delimited(_key(3, _LEN), m.owner.encode())
    return out


def _spec(s: pb.TaskSpec) -> bytes:
    out = b""
    if s.session_id:
        out += _delimited(_key(2, _LEN), s.session_id.encode())
    if s.input is not None:
        out += _delimited(_key(3, _LEN), s.input)
    if s.output is not None:
        out += _delimited(_key(4, _LEN), s.output)
    return out


def _status(s: pb.TaskStatus) -> bytes:
    out = b""
    state = int(s.state)
    if state:
        out += bytes((_key(1, 0),)) + _varint(state)
    if s.creation_time:
        out += bytes((_key(2, 0),)) + _varint(s.creation_time)
    if s.completion_time is not None:
        out += bytes((_key(3, 0),)) + _varint(s.completion_time)
    return out


def encode_task(task: pb.Task) -> bytes:
    """The protobuf encoding of ``task``, the same bytes as ``bytes(task)``."""
    out = b""
    if task.metadata is not None:
        out += _delimited(_key(1, _LEN), _metadata(task.metadata))
    if task.spec is not None:
        out += _delimited(_key(2, _LEN), _spec(task.spec))
    if task.status is not None:
        out += _delimited(_key(3, _LEN), _status(task.status))
    return out


@dataclass(eq=False, repr=False)
class WireTask(pb.Task):  # type: ignore[misc]
    """A ``pb.Task`` that encodes itself with :func:`encode_task`."""

    def SerializeToString(self) -> bytes:
        return encode_task(self)

    def __bytes__(self) -> bytes:
        return encode_task(self)


# --------------------------------------------------------------------------
# Requests of the client


def encode_create_task(session_id: str, data: bytes | None) -> bytes:
    """``bytes(pb.CreateTaskRequest(task=pb.TaskSpec(session_id=..., input=data)))``."""
    spec = _spec(pb.TaskSpec(session_id=session_id, input=data))
    return _delimited(_key(1, _LEN), spec)


def encode_task_request(task_id: str, session_id: str) -> bytes:
    """The bytes of a ``GetTaskRequest`` or a ``WatchTaskRequest``: the same two fields."""
    out = b""
    if task_id:
        out += _delimited(_key(1, _LEN), task_id.encode())
    if session_id:
        out += _delimited(_key(2, _LEN), session_id.encode())
    return out


# --------------------------------------------------------------------------
# Reading a Task


class TaskFields:
    """The fields of one ``Task`` message, flat; what :func:`decode_task` gives.

    ``has_metadata``, ``has_spec`` and ``has_status`` say whether the message
    carried each part; the fields of a missing part keep their defaults.
    ``state`` is the raw number of the ``TaskState``.
    """

    __slots__ = (
        "completion_time",
        "creation_time",
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
        self.has_metadata = False
        self.has_spec = False
        self.has_status = False

    @property
    def finished(self) -> bool:
        """Whether the task is Succeed or Failed."""
        return self.state == 2 or self.state == 3

    def to_pb(self, cls: type[pb.Task] = pb.Task) -> pb.Task:
        """The same task as a generated message, of ``cls`` (``pb.Task`` or a subclass)."""
        return cls(
            metadata=pb.Metadata(id=self.id, name=self.name, owner=self.owner)
            if self.has_metadata
            else None,
            spec=pb.TaskSpec(session_id=self.session_id, input=self.input, output=self.output)
            if self.has_spec
            else None,
            status=pb.TaskStatus(
                state=pb.TaskState(self.state),
                creation_time=self.creation_time,
                completion_time=self.completion_time,
            )
            if self.has_status
            else None,
        )


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


def _wrong(field: str) -> ValueError:
    return ValueError(f"a Task message holds {field} with the wrong wire type")


def _read_metadata(task: TaskFields, data: bytes, pos: int, end: int) -> None:
    task.has_metadata = True
    while pos < end:
        key, pos = _read_varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number in (1, 2, 3):
            if wire != _LEN:
                raise _wrong("Metadata field")
            start, pos = _length(data, pos, end)
            text = data[start:pos].decode()
            if number == 1:
                task.id = text
            elif number == 2:
                task.name = text
            else:
                task.owner = text
        else:
            pos = _skip(data, pos, end, wire)


def _read_spec(task: TaskFields, data: bytes, pos: int, end: int) -> None:
    task.has_spec = True
    while pos < end:
        key, pos = _read_varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number in (2, 3, 4):
            if wire != _LEN:
                raise _wrong("TaskSpec field")
            start, pos = _length(data, pos, end)
            if number == 2:
                task.session_id = data[start:pos].decode()
            elif number == 3:
                task.input = data[start:pos]
            else:
                task.output = data[start:pos]
        else:
            pos = _skip(data, pos, end, wire)


def _read_status(task: TaskFields, data: bytes, pos: int, end: int) -> None:
    task.has_status = True
    while pos < end:
        key, pos = _read_varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number in (1, 2, 3):
            if wire != 0:
                raise _wrong("TaskStatus field")
            value, pos = _read_varint(data, pos, end)
            if number == 1:
                task.state = _signed(value) if value >= 1 << 63 else value & 0xFFFFFFFF
            elif number == 2:
                task.creation_time = _signed(value)
            else:
                task.completion_time = _signed(value)
        else:
            pos = _skip(data, pos, end, wire)


_PARTS = {1: _read_metadata, 2: _read_spec, 3: _read_status}


def decode_task(data: bytes) -> TaskFields:
    """Read a ``Task`` message; ValueError if ``data`` is not one."""
    task = TaskFields()
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos, end)
        number, wire = key >> 3, key & 7
        read = _PARTS.get(number)
        if read is None:
            pos = _skip(data, pos, end, wire)
            continue
        if wire != _LEN:
            raise _wrong(f"field {number}")
        start, pos = _length(data, pos, end)
        read(task, data, start, pos)
    return task


# --------------------------------------------------------------------------
# Reading the client's requests (the cluster's side)


def _delimited_fields(data: bytes) -> dict[int, list[bytes]]:
    """Every length-delimited field of a request, by number; others are skipped."""
    found: dict[int, list[bytes]] = {}
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if wire != _LEN:
            pos = _skip(data, pos, end, wire)
            continue
        start, pos = _length(data, pos, end)
        found.setdefault(number, []).append(data[start:pos])
    return found


def _text(found: dict[int, list[bytes]], number: int) -> str:
    values = found.get(number)
    return "" if values is None else values[-1].decode()  # the last one counts


def decode_create_task(data: bytes) -> pb.CreateTaskRequest:
    """Read a ``CreateTaskRequest``; ValueError if ``data`` is not one."""
    parts = _delimited_fields(data).get(1)
    if parts is None:
        return pb.CreateTaskRequest()
    # A message field seen more than once is merged: read its parts in turn.
    task = TaskFields()
    for part in parts:
        _read_spec(task, part, 0, len(part))
    return pb.CreateTaskRequest(
        task=pb.TaskSpec(session_id=task.session_id, input=task.input, output=task.output)
    )


def decode_get_task(data: bytes) -> pb.GetTaskRequest:
    """Read a ``GetTaskRequest``; ValueError if ``data`` is not one."""
    found = _delimited_fields(data)
    return pb.GetTaskRequest(task_id=_text(found, 1), session_id=_text(found, 2))


def decode_watch_task(data: bytes) -> pb.WatchTaskRequest:
    """Read a ``WatchTaskRequest``; ValueError if ``data`` is not one."""
    found = _delimited_fields(data)
    return pb.WatchTaskRequest(task_id=_text(found, 1), session_id=_text(found, 2))
