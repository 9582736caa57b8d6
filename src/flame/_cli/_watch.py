"""``flame watch SESSION TASK``: each state of a task, as it changes, until a final one."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from .._types import Task
from ._render import emit_json_line, task_json, task_line
from ._status import run_command
from ._target import Target, cluster_options

__all__ = ["watch"]


@click.command("watch")
@cluster_options
@click.argument("session_id", metavar="SESSION")
@click.argument("task_id", metavar="TASK")
def watch(target: Target, session_id: str, task_id: str) -> int:
    """Follow the task TASK of SESSION until its state is final.

    It prints the task's state now, then each change: one line per state
    (with --json, one JSON object per line). It ends after SUCCEED, FAILED or
    CANCELLED, with status 0 whichever it was: the last line tells how the
    task ended.
    """
    return run_command(_watch, target, session_id, task_id)


async def _watch(target: Target, session_id: str, task_id: str) -> None:
    async with await target.connect() as conn:
        client = conn.session_client(session_id)
        # The state now first: a v0.4 cluster's watch does not send it.
        task = await client.get_task(task_id)
        _show(target, task)
        if task.is_completed():
            return
        last = task.state
        async with client.watch_task(task_id) as updates:
            async for task in updates:
                if task.state != last:
                    _show(target, task)
                    last = task.state


def _show(target: Target, task: Task) -> None:
    if target.json:
        emit_json_line(task_json(task))
    else:
        click.echo(task_line(task, datetime.now(timezone.utc)))
