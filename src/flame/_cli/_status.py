"""Exit statuses of the ``flame`` commands: the one table a script tests.

Every failure is told on stderr in one line, after the command's name, and
ends the command with one of these statuses. A :class:`~flame.FlameError`
is mapped to its status once, here, by its code.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import click

from .._errors import FlameError, FlameErrorCode, flame_error_in

__all__ = ["ExitStatus", "run_command", "status_for"]


class ExitStatus(enum.IntEnum):
    """What the exit status of a ``flame`` command says (see docs/cli.md)."""

    OK = 0
    """The command did what it was asked."""
    FAILED = 1
    """The cluster refused or failed the call (a closed session, a name in use, ...)."""
    USAGE = 2
    """Bad options or arguments, an unreadable file, or a configuration that cannot be used."""
    NOT_FOUND = 3
    """The application, session or task named does not exist on the cluster."""
    UNAVAILABLE = 4
    """Nothing answered at the endpoint, the connection was lost, or a call timed out."""
    UNIMPLEMENTED = 5
    """The cluster's Flame version does not have this call (listing tasks on v0.4, say)."""
    INTERRUPTED = 130
    """Ctrl-C (128 + SIGINT, as shells count it)."""


_BY_CODE = {
    FlameErrorCode.INVALID_CONFIG: ExitStatus.USAGE,
    FlameErrorCode.INVALID_ARGUMENT: ExitStatus.USAGE,
    FlameErrorCode.NOT_FOUND: ExitStatus.NOT_FOUND,
    FlameErrorCode.UNAVAILABLE: ExitStatus.UNAVAILABLE,
    FlameErrorCode.TIMEOUT: ExitStatus.UNAVAILABLE,
    FlameErrorCode.UNIMPLEMENTED: ExitStatus.UNIMPLEMENTED,
}


def status_for(error: FlameError) -> ExitStatus:
    """The exit status for ``error``: by its code, FAILED for the codes not listed."""
    return _BY_CODE.get(error.code, ExitStatus.FAILED)


def run_command(function: Callable[..., Awaitable[None]], *args: Any) -> int:
    """Run the async ``function(*args)`` of the current command; its exit status.

    A FlameError (alone or in an exception group) is told on stderr in one
    line, after the command's name, and gives the status its code maps to;
    Ctrl-C gives INTERRUPTED. Anything else is a bug, and keeps its traceback.
    """
    name = click.get_current_context().command_path
    try:
        anyio.run(function, *args)
    except KeyboardInterrupt:
        click.echo(f"{name}: interrupted", err=True)
        return ExitStatus.INTERRUPTED
    except BaseException as exc:
        error = flame_error_in(exc)
        if error is None:
            raise
        # One line, which a script can log or grep, whatever the message holds.
        said = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        click.echo(f"{name}: {said}", err=True)
        return status_for(error)
    return ExitStatus.OK
