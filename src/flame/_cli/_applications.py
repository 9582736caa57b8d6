"""``flame register FILE`` and ``flame unregister NAME``: the applications of a cluster."""

from __future__ import annotations

import click

from ..local._config import load_applications
from ._render import emit_json_line
from ._status import run_command
from ._target import Target, cluster_options

__all__ = ["register", "unregister"]


@click.command("register")
@cluster_options
@click.argument("path", metavar="FILE")
def register(target: Target, path: str) -> int:
    """Register the applications of FILE, in order.

    FILE is a flame-conf.yaml (its `applications` are read, its other keys
    left alone) or one application's mapping (name, shim, command,
    arguments, environments, working_directory, url). It is read and checked
    whole before anything is registered.
    """
    return run_command(_register, target, path)


async def _register(target: Target, path: str) -> None:
    applications = load_applications(path)
    registered: list[str] = []
    try:
        async with await target.connect() as conn:
            # An application without a shim takes the wire's first, as flame local does.
            attributes = [(app.name, app.attributes(conn.wire)) for app in applications]
            for name, attrs in attributes:
                await conn.register_application(name, attrs)
                registered.append(name)
                if not target.json:
                    click.echo(f"registered {name}")
    finally:
        # Said even when a later one failed: what was registered stays so.
        if target.json:
            emit_json_line({"registered": registered})


@click.command("unregister")
@cluster_options
@click.argument("name", metavar="NAME")
def unregister(target: Target, name: str) -> int:
    """Unregister the application NAME.

    Flame v0.4 lacks the call: its clusters keep their applications.
    """
    return run_command(_unregister, target, name)


async def _unregister(target: Target, name: str) -> None:
    async with await target.connect() as conn:
        await conn.unregister_application(name)
    if target.json:
        emit_json_line({"unregistered": name})
    else:
        click.echo(f"unregistered {name}")
