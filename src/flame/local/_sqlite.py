"""SqliteStorage: the embedded cluster's state in a SQLite file.

What a caller of :class:`SqliteStorage` can count on:

* **Nothing acknowledged is lost to a crash of the process.** Changes are
  committed in groups, one transaction each; :meth:`~SqliteStorage.committed`
  returns once every change made so far is committed, and the cluster
  answers no call, and sends no watch message, before that. The calls of
  the same turn of the event loop share one commit.
* **Ids are never handed out twice**, a crash included: ids are reserved in
  blocks (:data:`ID_BLOCK`) committed before the first id of a block is
  used, and a store opened after a crash goes on after the reserved ones.
* **A failed commit takes nothing down.** It is logged, said by
  :attr:`~SqliteStorage.problem`, and tried again (after 50 ms, then up to
  every 2 s); the changes wait in memory, and so do the calls that made
  them. Only closing the store gives up on them, and the waiting calls are
  then told their change was not kept.
* **One cluster per file**: the store holds an exclusive lock on
  ``<file>.lock`` while open; a second store on the file is refused.
* **The files are private**: the database (and so its ``-wal`` and ``-shm``
  files, which SQLite creates with the database's mode) and the lock file
  are created readable by their owner alone (0600).
* **One wire per file**: a file records the wire of the cluster that created
  it, and a cluster of another wire refuses it, saying so (each wire has its
  own rules for ids and states: v0.4 counts sessions, v0.6 takes the
  client's names and cancels tasks, which v0.4 cannot say).
* **Older files are upgraded in place**, in one transaction, the first time a
  cluster of this version opens them (:mod:`._migration`): nothing they held
  is lost, and an upgrade cut short leaves the file as it was.

The file is in WAL mode with ``synchronous=NORMAL``: a commit is written to
the log without an fsync, so it survives a crash of the process, not
necessarily one of the machine (which may lose the last commits, never the
file's consistency).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from typing import Any

import anyio

from .._errors import FlameError, FlameErrorCode
from ._migration import OLD_LAYOUTS, upgrade
from ._model import Application, Session, Task
from ._rows import (
    TASK_COLUMNS,
    application_from_row,
    application_row,
    session_from_row,
    session_row,
    task_from_row,
    task_row,
)
from ._storage import MemoryStorage

try:
    import fcntl
except ImportError:  # not a POSIX system: no lock (said when a store opens)
    fcntl = None  # type: ignore[assignment]

__all__ = ["COMMIT_WINDOW", "ID_BLOCK", "SqliteStorage"]

log = logging.getLogger("flame.local.storage")

#: The layout of the file; a file with a higher number was written by a
#: newer version of this code, which may store things differently. Layout 3
#: holds the cluster's own records (:mod:`._rows`) under text session ids,
#: and the wire of the cluster that made the file; layouts 1 and 2 (v0.4's
#: messages) are upgraded to it.
SCHEMA_VERSION = 3

#: Layout 3. Sessions are listed in rowid order, their order of creation (an
#: update keeps its row: upserts, never a delete and an insert).
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value
);
CREATE TABLE IF NOT EXISTS applications (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    common_data BLOB,
    application TEXT NOT NULL,
    last_task INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tasks (
    session_id TEXT NOT NULL,
    id INTEGER NOT NULL,
    state INTEGER NOT NULL,
    input BLOB,
    output BLOB,
    message TEXT,
    creation_time INTEGER NOT NULL,
    running_time INTEGER,
    completion_time INTEGER,
    PRIMARY KEY (session_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reserved_task_ids (
    session_id TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
"""

#: How long the writer waits, once a change is made, for more changes to
#: commit with it, by default: none, past the current turn of the event loop
#: (the calls that turn handles share the commit). Each call waits for its
#: commit, so a window slows every answer by its length, and under load the
#: calls of one turn already share a commit (the README has the figures).
COMMIT_WINDOW = 0.0

#: How many ids a reservation covers: after a crash, ids go on up to this
#: many past the last one handed out.
ID_BLOCK = 100

#: Pauses between attempts after a failed commit: the first, and the longest.
_FIRST_RETRY = 0.05
_LAST_RETRY = 2.0
#: How often a commit that keeps failing is logged again, in seconds.
_REPORT_EVERY = 30.0


def _bad_store(path: str, message: str) -> FlameError:
    return FlameError(FlameErrorCode.INVALID_CONFIG, f"storage sqlite://{path}: {message}")


def _check_path(path: str) -> None:
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


def _lock(path: str) -> int | None:
    """Lock ``<path>.lock`` for this store alone; its descriptor (None without fcntl)."""
    if fcntl is None:
        log.warning(
            "sqlite://%s: this system has no fcntl; nothing stops a second cluster "
            "from opening the same file",
            path,
        )
        return None
    lock_path = path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise _bad_store(path, f"cannot create its lock file {lock_path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip()
        os.close(fd)
        who = f"process {holder}" if holder.isdigit() else "another process"
        raise _bad_store(
            path,
            f"the file is in use by another cluster ({who} holds {lock_path}); stop that "
            "cluster first, or give this one another file",
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor releases its lock


def _create_private(path: str) -> None:
    """Create the database file, readable by its owner alone, unless it exists."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    except OSError as exc:
        raise _bad_store(path, f"cannot create it: {exc.strerror}") from None
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "sqlite://%s can be read by others than its owner (mode %o); it holds "
            "application environments and every task's input and output: chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )


def _connect(path: str, wire: str) -> sqlite3.Connection:
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
        if version in OLD_LAYOUTS:
            upgrade(db, path, version, wire)
        else:
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            _claim(db, path, wire)
    except FlameError:
        db.close()
        raise
    except sqlite3.Error as exc:
        db.close()
        raise _bad_store(path, f"cannot use it as a Flame store: {exc}") from None
    return db


def _claim(db: sqlite3.Connection, path: str, wire: str) -> None:
    """Record ``wire`` as the file's, or refuse a file made by a cluster of another wire."""
    row = db.execute("SELECT value FROM meta WHERE key = 'wire'").fetchone()
    if row is None:
        db.execute("INSERT INTO meta (key, value) VALUES ('wire', ?)", (wire,))
    elif row[0] != wire:
        raise _bad_store(
            path,
            f"the file holds the state of a cluster that speaks {row[0]}, and this one "
            f"speaks {wire}; each wire has its own ids and task states, so one file serves "
            f"one wire. Start this cluster with --wire {row[0]} (or `wire: {row[0]}` in its "
            "config), or give it another file",
        )


class _Commit:
    """The commit to come of the changes made since the last one: what callers wait for."""

    __slots__ = ("_done", "_error", "_event")

    def __init__(self) -> None:
        self._done = False
        self._error: FlameError | None = None
        self._event: anyio.Event | None = None

    async def wait(self) -> None:
        if not self._done:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
        if self._error is not None:
            raise self._error

    def finish(self, error: FlameError | None = None) -> None:
        self._done = True
        self._error = error
        if self._event is not None:
            self._event.set()


class SqliteStorage(MemoryStorage):
    """A :class:`MemoryStorage` committed to a SQLite file (see the module's text).

    Reads are answered from memory: the session manager keeps and changes the
    very objects it saved (a watched task is the one the executor finishes),
    and a dictionary lookup is about a hundred times cheaper than a query and
    a decode. Each record is stored as :mod:`._rows` writes it, with its ids;
    the id counters are stored too, so ids go on where they stopped.
    ``wire`` is the wire of the cluster: a file made by another's is refused.

    A ``save_*`` marks the object; :meth:`flush` writes every marked object
    as it is then, in one transaction. :meth:`write_behind`, run by the
    cluster, flushes ``window`` seconds (by default, one turn of the event
    loop) after the first change of a group; :meth:`close` flushes. The
    session manager changes nothing across an ``await``, so a flush between
    two turns of its event loop writes a state it was in.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, wire: str = "v0.4", window: float = COMMIT_WINDOW
    ) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.wire = wire
        self.window = window
        _check_path(self.path)
        self._lock_fd = _lock(self.path)
        try:
            _create_private(self.path)
            self._db: sqlite3.Connection | None = _connect(self.path, wire)
        except BaseException:
            _unlock(self._lock_fd)
            raise
        # What changed since the last flush, by key. None: deleted.
        self._dirty_apps: dict[str, Application | None] = {}
        # Deleted since the last flush, saved again or not: the row goes, so
        # that one saved again is listed last, as in memory. Sessions too.
        self._deleted_apps: set[str] = set()
        # In the order they were first saved since the last flush: new rows go in that order.
        self._saved_sessions: dict[str, None] = {}
        self._deleted_sessions: set[str] = set()
        self._dirty_counters: set[str] = set()  # sessions whose next task id moved
        self._dirty_tasks: dict[tuple[str, int], Task | None] = {}
        self._dirty_last_session = False
        self._dirty = False
        self._commit: _Commit | None = None
        self._wanted: anyio.Event | None = None
        # The highest ids committed as reserved: sessions, and tasks by session.
        self._reserved_sessions = 0
        self._reserved_tasks: dict[str, int] = {}
        self._problem: str | None = None
        self._failing_since = 0.0
        self._reported = 0.0
        try:
            self._load()
        except BaseException:
            self._db.close()
            self._db = None
            _unlock(self._lock_fd)
            raise

    def _load(self) -> None:
        db = self._db
        assert db is not None
        try:
            meta = dict(db.execute("SELECT key, value FROM meta"))
            self._reserved_sessions = int(meta.get("reserved_sessions", 0))
            # After a crash the reserved ids may have been handed out: go on after them.
            self._last_session = max(int(meta.get("last_session", 0)), self._reserved_sessions)
            self._reserved_tasks = dict(
                db.execute("SELECT session_id, last FROM reserved_task_ids")
            )
            # rowid order is registration (creation) order: an update keeps its row (upsert).
            for text in db.execute("SELECT record FROM applications ORDER BY rowid"):
                app = application_from_row(text[0])
                self._applications[app.name] = app
            for session_id, text, common_data, app_text, last_task in db.execute(
                "SELECT id, record, common_data, application, last_task FROM sessions "
                "ORDER BY rowid"
            ):
                self._sessions[session_id] = session_from_row(session_id, text, common_data)
                self._session_apps[session_id] = application_from_row(app_text)
                self._last_task[session_id] = max(
                    last_task, self._reserved_tasks.get(session_id, 0)
                )
                self._tasks[session_id] = {}
            all_tasks = self._tasks
            for row in db.execute(f"SELECT {TASK_COLUMNS} FROM tasks ORDER BY session_id, id"):
                tasks = all_tasks.get(row[0])
                if tasks is not None:
                    task = task_from_row(row)
                    tasks[task.id] = task
        except (sqlite3.Error, ValueError, IndexError) as exc:
            raise _bad_store(self.path, f"cannot read it: {exc}") from None

    # -- what changes marks --------------------------------------------

    def _mark(self) -> None:
        if self._db is None:
            raise FlameError(
                FlameErrorCode.INVALID_STATE, f"the store sqlite://{self.path} is closed"
            )
        self._dirty = True
        if self._commit is None:
            self._commit = _Commit()
        wanted = self._wanted
        if wanted is not None:
            wanted.set()

    def save_application(self, app: Application) -> None:
        super().save_application(app)
        name = app.name
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
        wanted = self._last_session + 1
        if wanted > self._reserved_sessions:
            self._reserve(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('reserved_sessions', ?)",
                (wanted + ID_BLOCK - 1,),
            )
            self._reserved_sessions = wanted + ID_BLOCK - 1
        session_id = super().next_session_id()
        self._dirty_last_session = True
        if not self._dirty:
            self._mark()
        return session_id

    def save_session(self, session: Session, app: Application) -> None:
        super().save_session(session, app)
        self._saved_sessions[session.id] = None
        if not self._dirty:
            self._mark()

    def delete_session(self, session_id: str) -> None:
        super().delete_session(session_id)
        # Created again with the same id, it gets a new row: listed last, as in memory.
        self._saved_sessions.pop(session_id, None)
        self._deleted_sessions.add(session_id)
        self._dirty_counters.discard(session_id)
        # Its tasks' rows go with the session's; let go of them now.
        for key in [key for key in self._dirty_tasks if key[0] == session_id]:
            del self._dirty_tasks[key]
        self._reserved_tasks.pop(session_id, None)
        if not self._dirty:
            self._mark()

    def next_task_id(self, session_id: str) -> int:
        wanted = self._last_task.get(session_id, 0) + 1
        if wanted > self._reserved_tasks.get(session_id, 0):
            self._reserve(
                "INSERT OR REPLACE INTO reserved_task_ids (session_id, last) VALUES (?, ?)",
                (session_id, wanted + ID_BLOCK - 1),
            )
            self._reserved_tasks[session_id] = wanted + ID_BLOCK - 1
        task_id = super().next_task_id(session_id)
        self._dirty_counters.add(session_id)
        if not self._dirty:
            self._mark()
        return task_id

    def _reserve(self, statement: str, values: tuple[object, ...]) -> None:
        """Commit a reservation of ids at once, before any of them is handed out."""
        db = self._db
        if db is None:
            raise FlameError(
                FlameErrorCode.INVALID_STATE, f"the store sqlite://{self.path} is closed"
            )
        try:
            db.execute(statement, values)  # autocommit: its own transaction
        except sqlite3.Error as exc:
            raise FlameError(
                FlameErrorCode.UNAVAILABLE,
                f"the cluster cannot write to sqlite://{self.path} ({exc}), so it cannot hand "
                "out new ids; try again once it can",
            ) from None

    def save_task(self, task: Task) -> None:
        key = (task.session_id, task.id)
        self._tasks[key[0]][key[1]] = task
        self._dirty_tasks[key] = task
        if not self._dirty:
            self._mark()

    def delete_task(self, session_id: str, task_id: int) -> None:
        super().delete_task(session_id, task_id)
        self._dirty_tasks[session_id, task_id] = None
        if not self._dirty:
            self._mark()

    # -- committing ----------------------------------------------------

    @property
    def unwritten(self) -> bool:
        """Whether there are changes not committed yet."""
        return self._dirty

    async def committed(self) -> None:
        commit = self._commit
        if commit is not None:
            await commit.wait()

    @property
    def problem(self) -> str | None:
        return self._problem

    def flush(self) -> bool:
        """Commit every change since the last flush, in one transaction; whether all is committed.

        A failure (a full disk, say, or a message that cannot be encoded) is
        logged and said by :attr:`problem`; the changes stay marked, and the
        calls waiting for them keep waiting, for the next flush to try again.
        """
        db = self._db
        if db is None or not self._dirty:
            return not self._dirty
        try:
            self._write(db)
        except Exception as exc:  # whatever it is, the store must go on
            self._failed(exc)
            try:
                if db.in_transaction:
                    db.rollback()
            except sqlite3.Error:
                pass
            return False
        if self._problem is not None:
            log.warning(
                "sqlite://%s: committed again, after failing for %.1f s",
                self.path,
                time.monotonic() - self._failing_since,
            )
            self._problem = None
        self._dirty_apps.clear()
        self._deleted_apps.clear()
        self._saved_sessions.clear()
        self._deleted_sessions.clear()
        self._dirty_counters.clear()
        self._dirty_tasks.clear()
        self._dirty_last_session = False
        self._dirty = False
        commit, self._commit = self._commit, None
        if commit is not None:
            commit.finish()
        return True

    def _write(self, db: sqlite3.Connection) -> None:
        gone_apps = [(name,) for name in self._deleted_apps]
        app_rows = [
            (name, application_row(app))
            for name, app in self._dirty_apps.items()
            if app is not None
        ]
        sessions = self._sessions
        gone_sessions = [(session_id,) for session_id in self._deleted_sessions]
        # A session deleted and created again in this group keeps the
        # reservation of its new life, made since.
        gone_reservations = [
            (session_id,) for session_id in self._deleted_sessions if session_id not in sessions
        ]
        session_rows: list[tuple[Any, ...]] = []
        for session_id in self._saved_sessions:
            record, common_data = session_row(sessions[session_id])
            session_rows.append(
                (
                    session_id,
                    record,
                    common_data,
                    application_row(self._session_apps[session_id]),
                    self._last_task.get(session_id, 0),
                )
            )
        counter_rows = [
            (self._last_task.get(session_id, 0), session_id)
            for session_id in self._dirty_counters
            if session_id not in self._saved_sessions
        ]
        task_rows = []
        gone_tasks = []
        for key, task in self._dirty_tasks.items():
            if task is None:
                gone_tasks.append(key)
            else:
                task_rows.append(task_row(task))
        db.execute("BEGIN")
        if gone_apps:
            db.executemany("DELETE FROM applications WHERE name = ?", gone_apps)
        if app_rows:
            db.executemany(
                "INSERT INTO applications (name, record) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                app_rows,
            )
        if self._dirty_last_session:
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_session', ?)",
                (self._last_session,),
            )
        if gone_sessions:
            # First: a session created again after it went is written anew
            # below, with the tasks of its new life. The tasks of one that
            # went were let go of when it went.
            db.executemany("DELETE FROM tasks WHERE session_id = ?", gone_sessions)
            db.executemany("DELETE FROM sessions WHERE id = ?", gone_sessions)
            db.executemany("DELETE FROM reserved_task_ids WHERE session_id = ?", gone_reservations)
        if session_rows:
            db.executemany(
                "INSERT INTO sessions (id, record, common_data, application, last_task) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET record = excluded.record, "
                "common_data = excluded.common_data, application = excluded.application, "
                "last_task = excluded.last_task",
                session_rows,
            )
        if counter_rows:
            db.executemany("UPDATE sessions SET last_task = ? WHERE id = ?", counter_rows)
        if task_rows:
            db.executemany(
                f"INSERT OR REPLACE INTO tasks ({TASK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                task_rows,
            )
        if gone_tasks:
            db.executemany("DELETE FROM tasks WHERE session_id = ? AND id = ?", gone_tasks)
        db.execute("COMMIT")

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        problem = f"cannot commit to sqlite://{self.path}: {exc}"
        if self._problem is None:
            self._failing_since = self._reported = now
            log.error(
                "%s; the changes wait in memory (the calls that made them are not answered "
                "until they are committed), and the store tries again",
                problem,
                exc_info=not isinstance(exc, sqlite3.Error),
            )
        elif now - self._reported >= _REPORT_EVERY:
            self._reported = now
            log.error("still %s (for %.0f s)", problem, now - self._failing_since)
        self._problem = problem

    async def write_behind(self) -> None:
        """Commit changes ``window`` seconds after the first of each group, until cancelled.

        After a failed commit, tries again after 50 ms, then twice as long
        each time, up to every 2 s.
        """
        pause = _FIRST_RETRY
        while True:
            if not self._dirty:
                self._wanted = anyio.Event()
                await self._wanted.wait()
                self._wanted = None
            # Let the callers of the same moment add their changes to this commit.
            await anyio.sleep(self.window)
            if self.flush():
                pause = _FIRST_RETRY
            else:
                await anyio.sleep(pause)
                pause = min(pause * 2, _LAST_RETRY)

    def close(self) -> None:
        db = self._db
        if db is None:
            return
        committed = self.flush()
        commit, self._commit = self._commit, None
        if committed:
            # Stopped cleanly: the counters are exact, so ids go on from them.
            try:
                db.execute("DELETE FROM reserved_task_ids")
                db.execute("DELETE FROM meta WHERE key = 'reserved_sessions'")
            except sqlite3.Error:
                pass  # the reservations stay: ids jump ahead at the next start, no more
        else:
            log.error(
                "sqlite://%s: closed with changes that could not be committed (%s); they are "
                "lost, and the calls that made them were told so",
                self.path,
                self._problem,
            )
            if commit is not None:
                commit.finish(
                    FlameError(
                        FlameErrorCode.UNAVAILABLE,
                        f"the cluster stopped before it could keep this change ({self._problem})",
                    )
                )
        self._db = None
        # The last connection to close checkpoints the log into the file.
        db.close()
        _unlock(self._lock_fd)
        self._lock_fd = None
