"""Where the embedded cluster keeps applications, sessions and tasks.

The session manager talks only to :class:`Storage`. It hands in the records
of :mod:`._model` themselves and calls ``save_*`` after every change it makes
to one of them, so a durable store can write the change through, while
:class:`MemoryStorage` (which holds the very objects it was given) has
nothing to do.

A durable store may commit changes after they are made: :attr:`unwritten`
says whether some are not committed yet, and :meth:`committed` waits until
they are. The cluster tells a client nothing before that (see the frontend).
:class:`~flame.local._sqlite.SqliteStorage` keeps the same objects in memory
and commits them to a SQLite file in groups, so that a cluster started again
on the file finds them.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator

from ._model import Application, Session, Task

__all__ = ["MemoryStorage", "Storage"]


class Storage(abc.ABC):
    """What the session manager needs from a store.

    Lookups return ``None`` for a missing object; the caller decides what a
    missing object means. Session ids are text; :meth:`next_session_id`
    hands out the numbers of a wire whose cluster makes them (v0.4), so a
    store that survives a restart keeps counting where it stopped.
    """

    # Applications, by name.
    @abc.abstractmethod
    def get_application(self, name: str) -> Application | None: ...

    @abc.abstractmethod
    def save_application(self, app: Application) -> None: ...

    @abc.abstractmethod
    def delete_application(self, name: str) -> None: ...

    @abc.abstractmethod
    def applications(self) -> Iterator[Application]:
        """In the order they were registered."""

    # Sessions, by id.
    @abc.abstractmethod
    def next_session_id(self) -> int:
        """A number never handed out before by this store, counting from 1."""

    @abc.abstractmethod
    def get_session(self, session_id: str) -> Session | None: ...

    @abc.abstractmethod
    def save_session(self, session: Session, app: Application) -> None:
        """Save ``session``, created with ``app``.

        The session runs with ``app`` as it was at its creation: the registered
        application may be updated or unregistered since.
        """

    @abc.abstractmethod
    def session_application(self, session_id: str) -> Application | None:
        """The application the session was created with."""

    @abc.abstractmethod
    def delete_session(self, session_id: str) -> None:
        """Forget the session and every task of it."""

    @abc.abstractmethod
    def sessions(self) -> Iterator[Session]:
        """In the order they were created."""

    # Tasks, by (session id, task id); task ids count from 1 in each session.
    @abc.abstractmethod
    def next_task_id(self, session_id: str) -> int: ...

    @abc.abstractmethod
    def get_task(self, session_id: str, task_id: int) -> Task | None: ...

    @abc.abstractmethod
    def save_task(self, task: Task) -> None: ...

    @abc.abstractmethod
    def delete_task(self, session_id: str, task_id: int) -> None: ...

    @abc.abstractmethod
    def tasks(self, session_id: str) -> Iterator[Task]:
        """The tasks of a session, in id order."""

    @abc.abstractmethod
    def close(self) -> None:
        """Write what is not written yet and let go of the store; nothing is saved after."""

    # Durability.
    @property
    def unwritten(self) -> bool:
        """Whether some changes are not committed yet (never, for a store that keeps nothing)."""
        return False

    async def committed(self) -> None:
        """Return once every change made so far is committed.

        A change is committed once a crash of the process can no longer lose
        it. Raises ``FlameError(UNAVAILABLE)`` if the store was closed before
        it could commit them.
        """
        return None

    @property
    def problem(self) -> str | None:
        """Why changes cannot be committed now, or None while they can."""
        return None


class MemoryStorage(Storage):
    """Everything in dictionaries; gone when the cluster stops."""

    def __init__(self) -> None:
        self._applications: dict[str, Application] = {}
        self._sessions: dict[str, Session] = {}
        self._session_apps: dict[str, Application] = {}
        self._tasks: dict[str, dict[int, Task]] = {}
        self._last_session = 0
        self._last_task: dict[str, int] = {}

    def get_application(self, name: str) -> Application | None:
        return self._applications.get(name)

    def save_application(self, app: Application) -> None:
        self._applications[app.name] = app

    def delete_application(self, name: str) -> None:
        self._applications.pop(name, None)

    def applications(self) -> Iterator[Application]:
        return iter(list(self._applications.values()))

    def next_session_id(self) -> int:
        self._last_session += 1
        return self._last_session

    def get_session(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def save_session(self, session: Session, app: Application) -> None:
        self._sessions[session.id] = session
        self._session_apps[session.id] = app
        self._tasks.setdefault(session.id, {})

    def session_application(self, session_id: str) -> Application | None:
        return self._session_apps.get(session_id)

    def delete_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
        self._session_apps.pop(session_id, None)
        self._tasks.pop(session_id, None)
        self._last_task.pop(session_id, None)

    def sessions(self) -> Iterator[Session]:
        # A dict keeps insertion order: this is creation order.
        return iter(list(self._sessions.values()))

    def next_task_id(self, session_id: str) -> int:
        last = self._last_task.get(session_id, 0) + 1
        self._last_task[session_id] = last
        return last

    def get_task(self, session_id: str, task_id: int) -> Task | None:
        tasks = self._tasks.get(session_id)
        return None if tasks is None else tasks.get(task_id)

    def save_task(self, task: Task) -> None:
        self._tasks[task.session_id][task.id] = task

    def delete_task(self, session_id: str, task_id: int) -> None:
        tasks = self._tasks.get(session_id)
        if tasks is not None:
            tasks.pop(task_id, None)

    def tasks(self, session_id: str) -> Iterator[Task]:
        tasks = self._tasks.get(session_id, {})
        return iter([tasks[task_id] for task_id in sorted(tasks)])

    def close(self) -> None:
        pass
