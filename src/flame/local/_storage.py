"""Where the embedded cluster keeps applications, sessions and tasks.

The session manager talks only to :class:`Storage`. It hands in the wire
messages themselves (``pb.Application``, ``pb.Session``, ``pb.Task``) and calls
``save_*`` after every change it makes to one of them, so a durable store can
write the change through, while :class:`MemoryStorage` (which holds the very
objects it was given) has nothing to do.

:class:`SqliteStorage` keeps the same objects in memory and writes them to a
SQLite file in groups, so that a cluster started again on the file finds
them.
"""

from __future__ import annotations

import abc
import logging
import os
import sqlite3
from collections.abc import Iterator

import anyio

from .._errors import FlameError, FlameErrorCode
from .._proto.v04 import flame as pb
from .._wire import WireTask, decode_task, encode_task

__all__ = ["MemoryStorage", "SqliteStorage", "Storage"]

log = logging.getLogger("flame.local.storage")


class Storage(abc.ABC):
    """What the session manager needs from a store.

    Lookups return ``None`` for a missing object; the caller decides what a
    missing object means. Session ids come from :meth:`next_session_id`, so a
    store that survives a restart keeps counting where it stopped.
    """

    # Applications, by name.
    @abc.abstractmethod
    def get_application(self, name: str) -> pb.Application | None: ...

    @abc.abstractmethod
    def save_application(self, app: pb.Application) -> None: ...

    @abc.abstractmethod
    def delete_application(self, name: str) -> None: ...

    @abc.abstractmethod
    def applications(self) -> Iterator[pb.Application]:
        """In the order they were registered."""

    # Sessions, by integer id.
    @abc.abstractmethod
    def next_session_id(self) -> int: ...

    @abc.abstractmethod
    def get_session(self, session_id: int) -> pb.Session | None: ...

    @abc.abstractmethod
    def save_session(self, session_id: int, session: pb.Session, app: pb.Application) -> None:
        """Save ``session``, created with ``app``.

        The session runs with ``app`` as it was at its creation: the registered
        application may be updated or unregistered since.
        """

    @abc.abstractmethod
    def session_application(self, session_id: int) -> pb.Application | None:
        """The application the session was created with."""

    @abc.abstractmethod
    def delete_session(self, session_id: int) -> None:
        """Forget the session and every task of it."""

    @abc.abstractmethod
    def sessions(self) -> Iterator[pb.Session]:
        """In id order."""

    # Tasks, by (session id, task id); task ids count from 1 in each session.
    @abc.abstractmethod
    def next_task_id(self, session_id: int) -> int: ...

    @abc.abstractmethod
    def get_task(self, session_id: int, task_id: int) -> pb.Task | None: ...

    @abc.abstractmethod
    def save_task(self, session_id: int, task_id: int, task: pb.Task) -> None: ...

    @abc.abstractmethod
    def delete_task(self, session_id: int, task_id: int) -> None: ...

    @abc.abstractmethod
    def tasks(self, session_id: int) -> Iterator[tuple[int, pb.Task]]:
        """The tasks of a session with their ids, in id order."""

    @abc.abstractmethod
    def close(self) -> None:
        """Write what is not written yet and let go of the store; nothing is saved after."""


class MemoryStorage(Storage):
    """Everything in dictionaries; gone when the cluster stops."""

    def __init__(self) -> None:
        self._applications: dict[str, pb.Application] = {}
        self._sessions: dict[int, pb.Session] = {}
        self._session_apps: dict[int, pb.Application] = {}
        self._tasks: dict[int, dict[int, pb.Task]] = {}
        self._last_session = 0
        self._last_task: dict[int, int] = {}

    def get_application(self, name: str) -> pb.Application | None:
        return self._applications.get(name)

    def save_application(self, app: pb.Application) -> None:
        assert app.metadata is not None
        self._applications[app.metadata.name] = app

    def delete_application(self, name: str) -> None:
        self._applications.pop(name, None)

    def applications(self) -> Iterator[pb.Application]:
        return iter(list(self._applications.values()))

    def next_session_id(self) -> int:
        self._last_session += 1
        return self._last_session

    def get_session(self, session_id: int) -> pb.Session | None:
        return self._sessions.get(session_id)

    def save_session(self, session_id: int, session: pb.Session, app: pb.Application) -> None:
        self._sessions[session_id] = session
        self._session_apps[session_id] = app
        self._tasks.setdefault(session_id, {})

    def session_application(self, session_id: int) -> pb.Application | None:
        return self._session_apps.get(session_id)

    def delete_session(self, session_id: int) -> None:
        self._sessions.pop(session_id, None)
        self._session_apps.pop(session_id, None)
        self._tasks.pop(session_id, None)
        self._last_task.pop(session_id, None)

    def sessions(self) -> Iterator[pb.Session]:
        # Ids only grow and a dict keeps insertion order: this is id order.
        return iter(list(self._sessions.values()))

    def next_task_id(self, session_id: int) -> int:
        last = self._last_task.get(session_id, 0) + 1
        self._last_task[session_id] = last
        return last

    def get_task(self, session_id: int, task_id: int) -> pb.Task | None:
        tasks = self._tasks.get(session_id)
        return None if tasks is None else tasks.get(task_id)

    def save_task(self, session_id: int, task_id: int, task: pb.Task) -> None:
        self._tasks[session_id][task_id] = task

    def delete_task(self, session_id: int, task_id: int) -> None:
        tasks = self._tasks.get(session_id)
        if tasks is not None:
            tasks.pop(task_id, None)

    def tasks(self, session_id: int) -> Iterator[tuple[int, pb.Task]]:
        return iter(sorted(self._tasks.get(session_id, {}).items()))

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------
# SQLite

#: The layout of the file; a file with a higher number was written by a
#: newer version of this code, which may store things differently.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS applications (
    name TEXT PRIMARY KEY,
    message BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    message BLOB NOT NULL,
    application BLOB NOT NULL,
    last_task INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tasks (
    session_id INTEGER NOT NULL,
    id INTEGER NOT NULL,
    message BLOB NOT NULL,
    PRIMARY KEY (session_id, id)
) WITHOUT ROWID;
"""

#: How long changes wait to be committed together, by default.
FLUSH_INTERVAL = 0.05


def _bad_store(path: str, message: str) -> FlameError:
    return FlameError(FlameErrorCode.INVALID_CONFIG, f"storage sqlite://{path}: {message}")


def _connect(path: str) -> sqlite3.Connection:
    if not path or path == ":memory:" or path.startswith("file:"):
        raise _bad_store(path, "give the path of a database file, like sqlite://flame.db")
    if os.path.isdir(path):
        raise _bad_store(path, "this is a directory; give the path of a database file in it")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise _bad_store(
            path,
            f"the directory {parent!r} does not exist; create it (mkdir -p {parent}) "
            "or choose a path in an existing directory",
        )
    try:
        # Autocommit mode: flush() opens and commits its transactions itself.
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise _bad_store(path, f"cannot open it: {exc}") from None
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise _bad_store(
                path,
                f"the file has layout {version}, written by a newer flame-sdk; this one "
                f"reads layout {SCHEMA_VERSION} and older",
            )
        # WAL: a commit appends to the log instead of rewriting pages, and
        # readers (sqlite3 on the file, for a look) do not block it. NORMAL:
        # no fsync per commit, only at checkpoints; a crash of the process
        # loses nothing committed, a crash of the machine may lose the last
        # commits, never the file's consistency.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except FlameError:
        db.close()
        raise
    except sqlite3.Error as exc:
        db.close()
        raise _bad_store(path, f"cannot use it as a Flame store: {exc}") from None
    return db


def _decode_task(data: bytes) -> pb.Task:
    # A WireTask, as the session manager makes them: the frontend sends it
    # with the fast encoder.
    return decode_task(data).to_pb(WireTask)


class SqliteStorage(MemoryStorage):
    """A :class:`MemoryStorage` written behind to a SQLite file.

    Reads are answered from memory: the session manager keeps and changes the
    very objects it saved (a watched task is the one the executor finishes),
    and a dictionary lookup is about a hundred times cheaper than a query and
    a decode. Each object is stored as its encoded message (a task with the
    hand-written codec of :mod:`flame._wire`, byte for byte the generated
    encoding) with its ids; the id counters are stored too, so ids go on
    where they stopped.

    Changes are not committed one by one: a ``save_*`` marks the object, and
    :meth:`flush` writes every marked object as it is then, in one
    transaction. :meth:`write_behind`, run by the cluster, flushes at most
    once per ``interval`` seconds (0.05 by default) while there are changes;
    :meth:`close` flushes. The session manager changes nothing across an
    ``await``, so a flush between two turns of its event loop writes a state
    it was in. A crash of the process loses at most the changes not yet
    flushed: those of the last ``interval`` seconds. The file stays
    consistent whatever happens (WAL mode); with ``synchronous=NORMAL`` a
    crash of the machine, though not of the process, may also lose the last
    commits.
    """

    def __init__(self, path: str | os.PathLike[str], *, interval: float = FLUSH_INTERVAL) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.interval = interval
        self._db: sqlite3.Connection | None = _connect(self.path)
        # What changed since the last flush, by key. None: deleted.
        self._dirty_apps: dict[str, pb.Application | None] = {}
        # Deleted since the last flush, saved again or not: the row goes, so
        # that one saved again is listed last, as in memory.
        self._deleted_apps: set[str] = set()
        self._dirty_sessions: dict[int, bool] = {}  # True: saved, False: deleted
        self._dirty_counters: set[int] = set()  # sessions whose next task id moved
        self._dirty_tasks: dict[tuple[int, int], pb.Task | None] = {}
        self._dirty_last_session = False
        self._dirty = False
        self._failing = False
        self._wanted: anyio.Event | None = None
        try:
            self._load()
        except BaseException:
            self._db.close()
            self._db = None
            raise

    def _load(self) -> None:
        db = self._db
        assert db is not None
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'last_session'").fetchone()
            self._last_session = 0 if row is None else int(row[0])
            # rowid order is registration order: an update keeps its row (upsert).
            for name, blob in db.execute("SELECT name, message FROM applications ORDER BY rowid"):
                self._applications[name] = pb.Application.parse(blob)
            for session_id, blob, app, last_task in db.execute(
                "SELECT id, message, application, last_task FROM sessions ORDER BY id"
            ):
                self._sessions[session_id] = pb.Session.parse(blob)
                self._session_apps[session_id] = pb.Application.parse(app)
                self._last_task[session_id] = last_task
                self._tasks[session_id] = {}
            all_tasks = self._tasks
            for session_id, task_id, blob in db.execute(
                "SELECT session_id, id, message FROM tasks ORDER BY session_id, id"
            ):
                tasks = all_tasks.get(session_id)
                if tasks is not None:
                    tasks[task_id] = _decode_task(blob)
        except (sqlite3.Error, ValueError) as exc:
            raise _bad_store(self.path, f"cannot read it: {exc}") from None

    # -- what changes marks --------------------------------------------

    def _mark(self) -> None:
        if self._db is None:
            raise FlameError(
                FlameErrorCode.INVALID_STATE, f"the store sqlite://{self.path} is closed"
            )
        self._dirty = True
        wanted = self._wanted
        if wanted is not None:
            wanted.set()

    def save_application(self, app: pb.Application) -> None:
        super().save_application(app)
        name = app.metadata.name
        if name in self._deleted_apps:
            # Registered again after the last one went: inserted after the
            # others written in this group, as it is listed after them.
            self._dirty_apps.pop(name, None)
        self._dirty_apps[name] = app
        if not self._dirty:
            self._mark()

    def delete_application(self, name: str) -> None:
        super().delete_application(name)
        self._dirty_apps[name] = None
        self._deleted_apps.add(name)
        if not self._dirty:
            self._mark()

    def next_session_id(self) -> int:
        session_id = super().next_session_id()
        self._dirty_last_session = True
        if not self._dirty:
            self._mark()
        return session_id

    def save_session(self, session_id: int, session: pb.Session, app: pb.Application) -> None:
        super().save_session(session_id, session, app)
        self._dirty_sessions[session_id] = True
        if not self._dirty:
            self._mark()

    def delete_session(self, session_id: int) -> None:
        super().delete_session(session_id)
        self._dirty_sessions[session_id] = False
        self._dirty_counters.discard(session_id)
        if not self._dirty:
            self._mark()

    def next_task_id(self, session_id: int) -> int:
        task_id = super().next_task_id(session_id)
        self._dirty_counters.add(session_id)
        if not self._dirty:
            self._mark()
        return task_id

    def save_task(self, session_id: int, task_id: int, task: pb.Task) -> None:
        self._tasks[session_id][task_id] = task
        self._dirty_tasks[session_id, task_id] = task
        if not self._dirty:
            self._mark()

    def delete_task(self, session_id: int, task_id: int) -> None:
        super().delete_task(session_id, task_id)
        self._dirty_tasks[session_id, task_id] = None
        if not self._dirty:
            self._mark()

    # -- writing -------------------------------------------------------

    @property
    def unwritten(self) -> bool:
        """Whether there are changes not committed yet."""
        return self._dirty

    def flush(self) -> None:
        """Commit every change since the last flush, in one transaction.

        A failure (a full disk, say) is logged and the changes stay marked,
        for the next flush to try again.
        """
        db = self._db
        if db is None or not self._dirty:
            return
        gone_apps = [(name,) for name in self._deleted_apps]
        app_rows = [(name, bytes(app)) for name, app in self._dirty_apps.items() if app is not None]
        session_rows = []
        gone_sessions = []
        for session_id, kept in self._dirty_sessions.items():
            if kept:
                session_rows.append(
                    (
                        session_id,
                        bytes(self._sessions[session_id]),
                        bytes(self._session_apps[session_id]),
                        self._last_task.get(session_id, 0),
                    )
                )
            else:
                gone_sessions.append((session_id,))
        counter_rows = [
            (self._last_task.get(session_id, 0), session_id)
            for session_id in self._dirty_counters
            if session_id not in self._dirty_sessions
        ]
        task_rows = []
        gone_tasks = []
        for key, task in self._dirty_tasks.items():
            if task is None:
                gone_tasks.append(key)
            else:
                task_rows.append((key[0], key[1], encode_task(task)))
        try:
            db.execute("BEGIN")
            if gone_apps:
                db.executemany("DELETE FROM applications WHERE name = ?", gone_apps)
            if app_rows:
                db.executemany(
                    "INSERT INTO applications (name, message) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET message = excluded.message",
                    app_rows,
                )
            if self._dirty_last_session:
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_session', ?)",
                    (self._last_session,),
                )
            if session_rows:
                db.executemany(
                    "INSERT OR REPLACE INTO sessions (id, message, application, last_task) "
                    "VALUES (?, ?, ?, ?)",
                    session_rows,
                )
            if counter_rows:
                db.executemany("UPDATE sessions SET last_task = ? WHERE id = ?", counter_rows)
            if task_rows:
                db.executemany(
                    "INSERT OR REPLACE INTO tasks (session_id, id, message) VALUES (?, ?, ?)",
                    task_rows,
                )
            if gone_tasks:
                db.executemany("DELETE FROM tasks WHERE session_id = ? AND id = ?", gone_tasks)
            if gone_sessions:
                # Last: tasks saved in this group before their session went go with it.
                db.executemany("DELETE FROM tasks WHERE session_id = ?", gone_sessions)
                db.executemany("DELETE FROM sessions WHERE id = ?", gone_sessions)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.rollback()
            if not self._failing:
                log.error("cannot write to sqlite://%s, will try again: %s", self.path, exc)
            self._failing = True
            return
        if self._failing:
            log.warning("sqlite://%s is written again", self.path)
            self._failing = False
        self._dirty_apps.clear()
        self._deleted_apps.clear()
        self._dirty_sessions.clear()
        self._dirty_counters.clear()
        self._dirty_tasks.clear()
        self._dirty_last_session = False
        self._dirty = False

    async def write_behind(self) -> None:
        """Flush changes, at most once per ``interval``, until cancelled."""
        while True:
            if not self._dirty:
                self._wanted = anyio.Event()
                await self._wanted.wait()
                self._wanted = None
            await anyio.sleep(self.interval)
            self.flush()

    def close(self) -> None:
        db = self._db
        if db is None:
            return
        self.flush()
        if self._dirty:
            log.error(
                "sqlite://%s: closed with changes that could not be written; they are lost",
                self.path,
            )
        self._db = None
        # The last connection to close checkpoints the log into the file.
        db.close()
