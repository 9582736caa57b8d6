"""The ``flame`` command line, built on click, with rich tables.

Layout: ``_app`` gathers the commands; each command group is a module
(``_list``, ``_view``, ``_watch``, ``_sessions`` for ``close``,
``_applications`` for ``register`` and ``unregister``, ``_local``,
``_demo``), which parses its options and calls the public API.
``_target`` holds the options every cluster command shares (which cluster,
``--json``), ``_render`` how results are shown, ``_status`` the exit
statuses and the one place a FlameError becomes one. ``flame local`` and
``flame demo`` run code that lives beside what it drives
(``flame.local._command``, ``flame._demo``).

Only this package imports click and rich: ``import flame`` loads neither.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the ``flame`` command with ``argv`` (default: the process's); the exit status."""
    import click

    from ._app import flame
    from ._status import ExitStatus

    try:
        result = flame.main(args=argv, prog_name="flame", standalone_mode=False)
    except click.UsageError as exc:
        path = exc.ctx.command_path if exc.ctx is not None else "flame"
        click.echo(f"{path}: {exc.format_message()} (see '{path} --help')", err=True)
        return ExitStatus.USAGE
    except click.ClickException as exc:
        click.echo(f"flame: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.Abort:
        click.echo("flame: interrupted", err=True)
        return ExitStatus.INTERRUPTED
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
