"""The groups of commands (``flame``, ``flame list``, ...), alike in how they fail."""

from __future__ import annotations

import click

from ._status import ExitStatus

__all__ = ["command_group"]


def command_group(name: str, help_text: str) -> click.Group:
    """A group of commands; given none, it prints its help and exits with the USAGE status.

    Said here rather than left to click, whose status for it changed between
    releases.
    """

    @click.pass_context
    def callback(ctx: click.Context) -> None:
        if ctx.invoked_subcommand is None:
            click.echo(ctx.get_help())
            ctx.exit(ExitStatus.USAGE)

    return click.Group(
        name,
        callback=callback,
        help=help_text,
        invoke_without_command=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
