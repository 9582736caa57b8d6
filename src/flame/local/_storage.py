"""Where the embedded cluster keeps applications, sessions and tasks.

The session manager talks only to :class:`Storage`. It hands in the wire
messages themselves (``pb.Application``, ``pb.Session``, ``pb.Task``) and calls
``save_*`` after every change it makes to one of them, so a durable store can
write the change through, while :class:`MemoryStorage` (which holds the very
objects it was given) has nothing to do.

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

from .._proto.v04 import flame as pb

__all__ = ["MemoryStorage", "Storage"]


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
