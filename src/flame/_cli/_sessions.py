"""``flame close SESSION`` and ``flame delete SESSION``: end a session, then forget it."""

from __future__ import annotations

import click

from ._render import emit, session_details, session_json
from ._status import run_command
from ._target import Target, cluster_options

__all__ = ["close", "delete"]


@click.command("close")
@cluster_options
@click.argument("session_id", metavar="SESSION")
def close(target: Target, session_id: str) -> int:
    """Close the session SESSION and show it closed.

    A cluster closes only a session none of whose tasks is running (Flame
    v0.4 and v0.5: nor pending; v0.6 cancels the pending ones).
    """
    return run_command(_close, target, session_id)


async def _close(target: Target, session_id: str) -> None:
    async with await target.connect() as conn:
        session = await conn.close_session(session_id)
    emit(target.json, session_json(session), session_details(session))


@click.command("delete")
@cluster_options
@click.argument("session_id", metavar="SESSION")
def delete(target: Target, session_id: str) -> int:
    """Delete the closed session SESSION and its tasks; show it as it was.

    Only a closed session can be deleted (close it first: ``flame close``);
    an open one is refused (status 1). Its tasks can no longer be read.
    """
    return run_command(_delete, target, session_id)


async def _delete(target: Target, session_id: str) -> None:
    async with await target.connect() as conn:
        session = await conn.delete_session(session_id)
    emit(target.json, session_json(session), session_details(session))
