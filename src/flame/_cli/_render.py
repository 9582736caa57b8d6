"""How the commands show what they read: rich tables for people, JSON for scripts.

The JSON keys are stable and documented in docs/cli.md; a change to them is a
change of the command line's interface. Times are ISO-8601 in UTC; states
and shims are their names (``"SUCCEED"``, ``"GRPC"``). A task's input and
output are text when they are UTF-8, else base64, as their ``*_encoding``
key says.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._session import Session
from .._types import Application, Event, ResourceRequirement, Task

__all__ = [
    "application_json",
    "applications_table",
    "emit",
    "emit_json_line",
    "iso",
    "session_details",
    "session_json",
    "sessions_table",
    "task_details",
    "task_json",
    "task_line",
    "tasks_table",
]

#: The width a table is laid out in when stdout is not a terminal.
_PIPE_WIDTH = 1000
#: The most characters of a task's input or output a table cell shows.
PREVIEW = 40


def iso(time: datetime | None) -> str | None:
    """``time`` as ISO-8601 in UTC, or None."""
    return None if time is None else time.astimezone(timezone.utc).isoformat()


def _short_time(time: datetime | None) -> str:
    """``time`` in UTC to the second, for tables; ``-`` for none."""
    if time is None:
        return "-"
    return time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _data_json(data: bytes | None) -> tuple[str | None, str | None]:
    """``data`` for JSON, and how it is encoded: ``utf-8``, ``base64``, or None for no data."""
    if data is None:
        return None, None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def _data_text(data: bytes | None, limit: int | None = None) -> str:
    """``data`` for a person: its text (its first line, cut at ``limit``), or its size."""
    if data is None:
        return "-"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(data)} bytes, not UTF-8>"
    if limit is None:
        return text.removesuffix("\n")  # a command's last newline would show as an empty line
    first, _, rest = text.partition("\n")
    if len(first) > limit or rest.strip():
        return first[:limit] + "…"
    return first


def _resreq(value: ResourceRequirement | None) -> dict[str, int] | None:
    if value is None:
        return None
    return {"cpu": value.cpu, "memory": value.memory, "gpu": value.gpu}


def _events(events: Iterable[Event]) -> list[dict[str, Any]]:
    return [
        {"code": e.code, "message": e.message, "creation_time": iso(e.creation_time)}
        for e in events
    ]


def application_json(app: Application) -> dict[str, Any]:
    """An application as ``flame list applications --json`` prints it."""
    schema = app.schema
    return {
        "name": app.name,
        "id": app.id,
        "shim": app.shim.name,
        "state": app.state.name,
        "creation_time": iso(app.creation_time),
        "command": app.command,
        "arguments": list(app.arguments or []),
        "environments": list(app.environments or []),
        "working_directory": app.working_directory,
        "url": app.url,
        "description": app.description,
        "labels": list(app.labels or []),
        "image": app.image,
        "max_instances": app.max_instances,
        "delay_release": app.delay_release,
        "schema": None
        if schema is None
        else {"input": schema.input, "output": schema.output, "common_data": schema.common_data},
        "installer": app.installer,
    }


def session_json(session: Session) -> dict[str, Any]:
    """A session as ``flame view session --json`` prints it."""
    return {
        "id": session.id,
        "application": session.application,
        "state": session.state.name,
        "slots": session.slots,
        "creation_time": iso(session.creation_time),
        "completion_time": iso(session.completion_time),
        "pending": session.pending,
        "running": session.running,
        "succeed": session.succeed,
        "failed": session.failed,
        "cancelled": session.cancelled,
        "min_instances": session.min_instances,
        "max_instances": session.max_instances,
        "priority": session.priority,
        "resreq": _resreq(session.resreq),
        "events": _events(session.events),
    }


def task_json(task: Task) -> dict[str, Any]:
    """A task as ``flame view task --json`` prints it."""
    task_input, input_encoding = _data_json(task.input)
    output, output_encoding = _data_json(task.output)
    return {
        "id": task.id,
        "session_id": task.session_id,
        "state": task.state.name,
        "creation_time": iso(task.creation_time),
        "completion_time": iso(task.completion_time),
        "input": task_input,
        "input_encoding": input_encoding,
        "output": output,
        "output_encoding": output_encoding,
        "events": _events(task.events),
    }


def _table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _row(table: Table, *values: object) -> None:
    # Text, not markup: a name or an output with [brackets] is shown as it is.
    table.add_row(*(Text(str(value)) for value in values))


def applications_table(apps: Sequence[Application]) -> Table:
    table = _table("NAME", "SHIM", "STATE", "COMMAND", "CREATED")
    for app in apps:
        command = " ".join([app.command or "", *(app.arguments or [])]).strip() or "-"
        created = _short_time(app.creation_time)
        _row(table, app.name, app.shim.name, app.state.name, command, created)
    return table


# fmt: off
_SESSION_COLUMNS = (
    "ID", "APPLICATION", "STATE", "PENDING", "RUNNING", "SUCCEED", "FAILED", "CANCELLED", "CREATED",
)
# fmt: on


def sessions_table(sessions: Sequence[Session]) -> Table:
    table = _table(*_SESSION_COLUMNS)
    for s in sessions:
        counts = (s.pending, s.running, s.succeed, s.failed, s.cancelled)
        _row(table, s.id, s.application, s.state.name, *counts, _short_time(s.creation_time))
    return table


def tasks_table(tasks: Sequence[Task]) -> Table:
    table = _table("ID", "STATE", "CREATED", "COMPLETED", "OUTPUT")
    for t in tasks:
        times = (_short_time(t.creation_time), _short_time(t.completion_time))
        _row(table, t.id, t.state.name, *times, _data_text(t.output, PREVIEW))
    return table


def _details(rows: Iterable[tuple[str, object]]) -> Table:
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        _row(table, key, value)
    return table


def _event_lines(events: Sequence[Event]) -> str:
    if not events:
        return "-"
    return "\n".join(
        f"{_short_time(e.creation_time)} {e.code}: {e.message or ''}".rstrip() for e in events
    )


def session_details(session: Session) -> Table:
    rows: list[tuple[str, object]] = [
        ("id", session.id),
        ("application", session.application),
        ("state", session.state.name),
        ("slots", session.slots),
        ("created", _short_time(session.creation_time)),
        ("completed", _short_time(session.completion_time)),
        ("pending", session.pending),
        ("running", session.running),
        ("succeed", session.succeed),
        ("failed", session.failed),
        ("cancelled", session.cancelled),
    ]
    if session.resreq is not None:
        r = session.resreq
        rows.append(("resreq", f"cpu={r.cpu},memory={r.memory},gpu={r.gpu}"))
    rows.append(("events", _event_lines(session.events)))
    return _details(rows)


def task_details(task: Task) -> Table:
    return _details(
        [
            ("id", task.id),
            ("session", task.session_id),
            ("state", task.state.name),
            ("created", _short_time(task.creation_time)),
            ("completed", _short_time(task.completion_time)),
            ("input", _data_text(task.input)),
            ("output", _data_text(task.output)),
            ("events", _event_lines(task.events)),
        ]
    )


def task_line(task: Task, seen: datetime) -> str:
    """A line of ``flame watch``: when the state was seen, the state, the output at the end."""
    line = f"{_short_time(seen)} task {task.id} of session {task.session_id}: {task.state.name}"
    if task.is_completed() and task.output is not None:
        line += f" output: {_data_text(task.output, PREVIEW)}"
    return line


def emit(as_json: bool, value: Any, table: Table) -> None:
    """Print ``value`` as JSON when ``as_json``, else ``table``, to stdout."""
    if as_json:
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))
        return
    console = Console(highlight=False)
    if console.is_terminal:
        console.print(table)
        return
    # Into a pipe or a file: whole lines, however wide, rather than cells
    # folded to 80 columns; without the padding of the last column.
    wide = Console(highlight=False, width=_PIPE_WIDTH, color_system=None)
    with wide.capture() as captured:
        wide.print(table)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def emit_json_line(value: Any) -> None:
    """Print ``value`` as one line of JSON (JSON Lines), flushed at once."""
    click.echo(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
