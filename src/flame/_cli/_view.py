"""``flame view session ID`` and ``flame view task SESSION TASK``: one object in full."""

from __future__ import annotations

import click

from ._groups import command_group
from ._render import emit, session_details, session_json, task_details, task_json
from ._status import run_command
from ._target import Target, cluster_options

__all__ = ["view_group"]

view_group = command_group("view", "Show one session or one task of a cluster in full.")


@view_group.command("session")
@cluster_options
@click.argument("session_id", metavar="SESSION")
def view_session(target: Target, session_id: str) -> int:
    """The session SESSION: its state, its tasks counted by state, its events."""
    return run_command(_session, target, session_id)


async def _session(target: Target, session_id: str) -> None:
    async with await target.connect() as conn:
        session = await conn.get_session(session_id)
    emit(target.json, session_json(session), session_details(session))


@view_group.command("task")
@cluster_options
@click.argument("session_id", metavar="SESSION")
@click.argument("task_id", metavar="TASK")
def view_task(target: Target, session_id: str, task_id: str) -> int:
    """The task TASK of the session SESSION: its state, input, output and events."""
    return run_command(_task, target, session_id, task_id)


async def _task(target: Target, session_id: str, task_id: str) -> None:
    async with await target.connect() as conn:
        task = await conn.session_client(session_id).get_task(task_id)
    emit(target.json, task_json(task), task_details(task))
