"""How the records of :mod:`._model` are written in the rows of a SQLite store.

Applications and sessions change seldom and have many fields: each is one
JSON text, readable with ``sqlite3`` on the file, with its bytes (a session's
common data) in a column of their own. A task is written on every change of
its state, so its fields are plain columns, bound as they are: nothing is
encoded on the hot path.

JSON keys that a row lacks take their defaults, so that a field added later
reads as unset in an older row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._model import (
    Application,
    ApplicationState,
    Event,
    Resources,
    Schema,
    Session,
    SessionSpec,
    SessionState,
    Shim,
    Task,
    TaskState,
)

__all__ = [
    "TASK_COLUMNS",
    "application_from_row",
    "application_row",
    "session_from_row",
    "session_row",
    "task_from_row",
    "task_row",
]


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def application_row(app: Application) -> str:
    """The JSON text an application is stored as."""
    record: dict[str, Any] = {
        "name": app.name,
        "shim": app.shim.value,
        "state": int(app.state),
        "creation_time": app.creation_time,
    }
    for key in (
        "command",
        "working_directory",
        "url",
        "description",
        "image",
        "max_instances",
        "delay_release",
        "installer",
    ):
        value = getattr(app, key)
        if value is not None:
            record[key] = value
    if app.arguments:
        record["arguments"] = list(app.arguments)
    if app.environments:
        record["environments"] = [list(pair) for pair in app.environments]
    if app.labels:
        record["labels"] = list(app.labels)
    if app.schema is not None:
        record["schema"] = {
            key: getattr(app.schema, key)
            for key in ("input", "output", "common_data")
            if getattr(app.schema, key) is not None
        }
    return _json(record)


def application_from_row(text: str) -> Application:
    """The application of a row; ValueError if the text is not one."""
    record = json.loads(text)
    try:
        schema = record.get("schema")
        return Application(
            name=record["name"],
            shim=Shim(record["shim"]),
            command=record.get("command"),
            arguments=tuple(record.get("arguments", ())),
            environments=tuple((name, value) for name, value in record.get("environments", ())),
            working_directory=record.get("working_directory"),
            url=record.get("url"),
            description=record.get("description"),
            labels=tuple(record.get("labels", ())),
            image=record.get("image"),
            max_instances=record.get("max_instances"),
            delay_release=record.get("delay_release"),
            schema=None if schema is None else Schema(**schema),
            installer=record.get("installer"),
            state=ApplicationState(record.get("state", 0)),
            creation_time=record.get("creation_time", 0),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"an application row lacks or misstates {exc}") from None


def session_row(session: Session) -> tuple[str, bytes | None]:
    """The JSON text a session is stored as, and its common data."""
    spec = session.spec
    record: dict[str, Any] = {
        "application": spec.application,
        "slots": spec.slots,
        "min_instances": spec.min_instances,
        "batch_size": spec.batch_size,
        "priority": spec.priority,
        "state": int(session.state),
        "creation_time": session.creation_time,
        "counters": list(session.counters()),
    }
    if spec.max_instances is not None:
        record["max_instances"] = spec.max_instances
    if spec.resources is not None:
        r = spec.resources
        record["resources"] = [r.cpu, r.memory, r.gpu]
    if session.completion_time is not None:
        record["completion_time"] = session.completion_time
    if session.events:
        record["events"] = [[e.code, e.message, e.creation_time] for e in session.events]
    return _json(record), spec.common_data


def session_from_row(session_id: str, text: str, common_data: bytes | None) -> Session:
    """The session of a row; ValueError if the text is not one."""
    record = json.loads(text)
    try:
        resources = record.get("resources")
        spec = SessionSpec(
            application=record["application"],
            common_data=common_data,
            slots=record.get("slots", 1),
            min_instances=record.get("min_instances", 0),
            max_instances=record.get("max_instances"),
            batch_size=record.get("batch_size", 1),
            priority=record.get("priority", 0),
            resources=None if resources is None else Resources(*resources),
        )
        session = Session(
            session_id,
            spec,
            state=SessionState(record.get("state", 0)),
            creation_time=record.get("creation_time", 0),
            completion_time=record.get("completion_time"),
            events=[Event(code, message, at) for code, message, at in record.get("events", ())],
        )
        (
            session.pending,
            session.running,
            session.succeed,
            session.failed,
            session.cancelled,
        ) = record.get("counters", (0, 0, 0, 0, 0))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"a session row lacks or misstates {exc}") from None
    return session


#: The columns of the tasks table, in the order of :func:`task_row`.
TASK_COLUMNS = (
    "session_id, id, state, input, output, message, creation_time, running_time, completion_time"
)


def task_row(task: Task) -> tuple[Any, ...]:
    """The values of a task's row, in the order of :data:`TASK_COLUMNS`."""
    return (
        task.session_id,
        task.id,
        int(task.state),
        task.input,
        task.output,
        task.message,
        task.creation_time,
        task.running_time,
        task.completion_time,
    )


_STATES = tuple(TaskState)


def task_from_row(row: tuple[Any, ...]) -> Task:
    """The task of a row read as :data:`TASK_COLUMNS`."""
    session_id, task_id, state, data, output, message, created, running, completed = row
    return Task(
        task_id,
        session_id,
        data,
        created,
        _STATES[state],
        output=output,
        message=message,
        running_time=running,
        completion_time=completed,
    )
