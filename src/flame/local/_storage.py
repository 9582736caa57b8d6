"""Where the embedded cluster keeps applications, sessions and tasks.

The session manager talks only to :class:`Storage`. It hands in the wire
messages themselves (``pb.Application``, ``pb.Session``, ``pb.Task``) and calls
``save_*`` after every change it makes to one of them, so a durable store can
write the change through, while :class:`MemoryStorage` (which holds the very
objects it was given) has nothing to do.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator

from .._proto import flame as pb

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
    def applications(self) -> Iterator[pb.Application]: ...

    # Sessions, by integer id.
    @abc.abstractmethod
    def next_session_id(self) -> int: ...

    @abc.abstractmethod
    def get_session(self, session_id: int) -> pb.Session | None: ...

    @abc.abstractmethod
    def save_session(self, session_id: int, session: pb.Session) -> None: ...

    @abc.abstractmethod
    def delete_session(self, session_id: int) -> None:
        """Forget the session and every task of it."""

    @abc.abstractmethod
    def sessions(self) -> Iterator[pb.Session]: ...

    # Tasks, by (session id, task id); task ids count from 1 in each session.
    @abc.abstractmethod
    def next_task_id(self, session_id: int) -> int: ...

    @abc.abstractmethod
    def get_task(self, session_id: int, task_id: int) -> pb.Task | None: ...

    @abc.abstractmethod
    def save_task(self, session_id: int, task_id: int, task: pb.Task) -> None: ...

    @abc.abstractmethod
    def delete_task(self, session_id: int, task_id: int) -> None: ...


class MemoryStorage(Storage):
    """Everything in dictionaries; gone when the cluster stops."""

    def __init__(self) -> None:
        self._applications: dict[str, pb.Application] = {}
        self._sessions: dict[int, pb.Session] = {}
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

    def save_session(self, session_id: int, session: pb.Session) -> None:
        self._sessions[session_id] = session
        self._tasks.setdefault(session_id, {})

    def delete_session(self, session_id: int) -> None:
        self._sessions.pop(session_id, None)
        self._tasks.pop(session_id, None)
        self._last_task.pop(session_id, None)

    def sessions(self) -> Iterator[pb.Session]:
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
