"""Upgrading a SQLite store written by an older flame-sdk to the current layout.

Layouts 1 and 2 (flame-sdk before the cluster spoke v0.6) held v0.4's
messages as they went on the wire: ``pb.Application``, ``pb.Session`` and
``pb.Task`` encoded, under integer session ids, with times in seconds.
Layout 3 (:mod:`._sqlite`, :mod:`._rows`) holds the cluster's own records
under text ids, with times in milliseconds, and the wire of the cluster.

:func:`upgrade` rewrites every row in one transaction, the first time a
cluster of this version opens such a file: the file is either upgraded
whole or left as it was (a failure rolls back, and says why). Nothing is
dropped: every application, session (its spec, state, times and counters,
and the application it was created with), task (input, output, state,
times), id counter and id reservation is carried over. Such a file is a v0.4
cluster's, and only a v0.4 cluster upgrades it: another refuses it before
changing anything.
"""

from __future__ import annotations

import sqlite3

from .._errors import FlameError, FlameErrorCode
from .._proto.v04 import flame as pb
from .._wire import decode_task
from ._model import (
    Application,
    ApplicationState,
    Session,
    SessionSpec,
    SessionState,
    Shim,
    Task,
    TaskState,
)
from ._rows import TASK_COLUMNS, application_row, session_row, task_row

__all__ = ["OLD_LAYOUTS", "upgrade"]

#: The layouts :func:`upgrade` reads.
OLD_LAYOUTS = (1, 2)

_TABLES = ("meta", "applications", "sessions", "tasks", "reserved_task_ids")


def _ms(seconds: int | None) -> int | None:
    return None if seconds is None else seconds * 1000


def _application(message: pb.Application) -> Application:
    assert message.metadata is not None and message.spec is not None
    spec = message.spec
    status = message.status
    environments = tuple(
        (name, value) for name, _, value in (entry.partition("=") for entry in spec.environments)
    )
    return Application(
        name=message.metadata.name,
        shim=Shim.named(pb.Shim(spec.shim).name),
        command=spec.command,
        arguments=tuple(spec.arguments),
        environments=environments,
        working_directory=spec.working_directory,
        url=spec.url,
        state=ApplicationState(int(status.state)) if status else ApplicationState.ENABLED,
        creation_time=(status.creation_time if status else 0) * 1000,
    )


def _session(message: pb.Session) -> Session:
    assert message.metadata is not None and message.spec is not None
    status = message.status or pb.SessionStatus()
    session = Session(
        message.metadata.id,
        SessionSpec(
            application=message.spec.application,
            common_data=message.spec.common_data,
            slots=message.spec.slots or 1,
        ),
        state=SessionState(int(status.state)),
        creation_time=status.creation_time * 1000,
        completion_time=_ms(status.completion_time),
    )
    session.pending = status.pending
    session.running = status.running
    session.succeed = status.succeed
    session.failed = status.failed
    return session


def _task(session_id: str, task_id: int, blob: bytes) -> Task:
    fields = decode_task(blob)
    return Task(
        task_id,
        session_id,
        fields.input,
        fields.creation_time * 1000,
        TaskState(fields.state),
        output=fields.output,
        completion_time=_ms(fields.completion_time),
    )


def upgrade(db: sqlite3.Connection, path: str, layout: int, wire: str) -> None:
    """Rewrite the layout-``layout`` store ``db`` (at ``path``) as the current layout."""
    # Imported here: _sqlite imports this module.
    from ._sqlite import SCHEMA, SCHEMA_VERSION

    if wire != "v0.4":
        raise FlameError(
            FlameErrorCode.INVALID_CONFIG,
            f"storage sqlite://{path}: the file holds the state of a v0.4 cluster (written by "
            f"an older flame-sdk, layout {layout}), and this cluster speaks {wire}; each wire "
            "has its own ids and task states, so one file serves one wire. Start this cluster "
            "with --wire v0.4 (or `wire: v0.4` in its config), which upgrades the file and "
            "serves it, or give it another file",
        )
    try:
        db.execute("BEGIN IMMEDIATE")
        present = {
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        for table in _TABLES:
            if table in present:
                db.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
        # Statement by statement: executescript would commit the transaction.
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        _copy(db, present)
        for table in _TABLES:
            if table in present:
                db.execute(f"DROP TABLE old_{table}")
        db.execute("INSERT INTO meta (key, value) VALUES ('wire', ?)", (wire,))
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        if isinstance(exc, (sqlite3.Error, ValueError)):
            raise FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"storage sqlite://{path}: cannot upgrade it from layout {layout} ({exc}); the "
                "file is left as it was",
            ) from None
        raise


def _copy(db: sqlite3.Connection, present: set[str]) -> None:
    if "meta" in present:
        db.execute("INSERT INTO meta (key, value) SELECT key, value FROM old_meta")
    for (blob,) in db.execute("SELECT message FROM old_applications ORDER BY rowid").fetchall():
        app = _application(pb.Application.parse(blob))
        db.execute(
            "INSERT INTO applications (name, record) VALUES (?, ?)",
            (app.name, application_row(app)),
        )
    # Integer ids in id order: the order they were created in.
    rows = db.execute(
        "SELECT id, message, application, last_task FROM old_sessions ORDER BY id"
    ).fetchall()
    for session_id, blob, app_blob, last_task in rows:
        session = _session(pb.Session.parse(blob))
        # The row's id is the one the cluster used, whatever the message says.
        session.id = str(session_id)
        record, common_data = session_row(session)
        app = _application(pb.Application.parse(app_blob))
        db.execute(
            "INSERT INTO sessions (id, record, common_data, application, last_task) "
            "VALUES (?, ?, ?, ?, ?)",
            (session.id, record, common_data, application_row(app), last_task),
        )
    tasks = db.execute("SELECT session_id, id, message FROM old_tasks ORDER BY session_id, id")
    db.executemany(
        f"INSERT INTO tasks ({TASK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (task_row(_task(str(session_id), task_id, blob)) for session_id, task_id, blob in tasks),
    )
    if "reserved_task_ids" in present:
        db.execute(
            "INSERT INTO reserved_task_ids (session_id, last) "
            "SELECT CAST(session_id AS TEXT), last FROM old_reserved_task_ids"
        )
