"""``flame close SESSION``: close a session; it then accepts no task."""

from __future__ import annotations

import click

from ._render import emit, session_details, session_json
from ._status import run_command
from ._target import Target, cluster_options

__all__ = ["close"]


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
