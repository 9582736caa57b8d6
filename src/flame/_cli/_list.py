"""``flame list applications|sessions|tasks``: what a cluster holds, one line each."""

from __future__ import annotations

import anyio
import click

from .._connection import Connection
from .._errors import FlameError, FlameErrorCode
from .._types import Task
from ._groups import command_group
from ._render import (
    application_json,
    applications_table,
    emit,
    session_json,
    sessions_table,
    task_json,
    tasks_table,
)
from ._status import run_command
from ._target import Target, cluster_options

__all__ = ["list_group"]

#: GetTask calls in flight at once where tasks are read one by one.
_READ_AT_ONCE = 16

list_group = command_group("list", "List the applications, sessions or tasks of a cluster.")


@list_group.command("applications")
@cluster_options
def list_applications(target: Target) -> int:
    """Every registered application."""
    return run_command(_applications, target)


async def _applications(target: Target) -> None:
    async with await target.connect() as conn:
        apps = await conn.list_applications()
    emit(target.json, [application_json(a) for a in apps], applications_table(apps))


@list_group.command("sessions")
@cluster_options
def list_sessions(target: Target) -> int:
    """Every session, open or closed, with its tasks counted by state."""
    return run_command(_sessions, target)


async def _sessions(target: Target) -> None:
    async with await target.connect() as conn:
        sessions = await conn.list_sessions()
    emit(target.json, [session_json(s) for s in sessions], sessions_table(sessions))


@list_group.command("tasks")
@cluster_options
@click.option("--session", "session_id", metavar="ID", required=True, help="the session's id")
def list_tasks(target: Target, session_id: str) -> int:
    """Every task of one session, in the order of their ids."""
    return run_command(_tasks, target, session_id)


async def _tasks(target: Target, session_id: str) -> None:
    async with await target.connect() as conn:
        tasks = await _read_tasks(conn, session_id)
    emit(target.json, [task_json(t) for t in tasks], tasks_table(tasks))


async def _read_tasks(conn: Connection, session_id: str) -> list[Task]:
    """Every task of the session, in the order of their ids.

    By ListTask where the cluster has it (v0.6). Flame v0.4 and v0.5 have no
    call that lists tasks, but number a session's tasks 1, 2, ... in the
    order they were created: there, each is read by GetTask, as many as the
    session counts, a few at a time.
    """
    try:
        tasks = [task async for task in conn.list_tasks(session_id)]
    except FlameError as error:
        if error.code is not FlameErrorCode.UNIMPLEMENTED:
            raise
    else:
        return sorted(tasks, key=lambda t: (len(t.id), t.id))
    session = await conn.get_session(session_id)
    count = session.pending + session.running + session.succeed + session.failed
    count += session.cancelled
    found: list[Task | None] = [None] * count
    limiter = anyio.CapacityLimiter(_READ_AT_ONCE)

    async def read(index: int) -> None:
        async with limiter:
            found[index] = await session.get_task(str(index + 1))

    async with anyio.create_task_group() as group:
        for index in range(count):
            group.start_soon(read, index)
    return [task for task in found if task is not None]
