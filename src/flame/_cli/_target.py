"""Which cluster a command talks to: the options every cluster command shares.

``--endpoint``, ``--context``, ``--wire`` and ``--auth-token`` are handed to
:func:`flame.connect` as they are, so that the command resolves the cluster
exactly as a program does: with no ``--endpoint``, ``FLAME_ENDPOINT``, else
the current context of ``~/.flame/flame.yaml`` (``--context`` names
another), else ``~/.flame/flame-conf.yaml``, else the default endpoint.
``--json`` is here too: every cluster command takes it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import click

from .._connection import Connection, connect
from .._wires import WIRES

__all__ = ["Target", "cluster_options"]

_F = TypeVar("_F", bound=Callable[..., Any])


@attrs.frozen
class Target:
    """The cluster a command talks to, and whether it answers in JSON."""

    endpoint: str | None = None
    context: str | None = None
    wire: str | None = None
    auth_token: str | None = attrs.field(default=None, repr=False)
    json: bool = False

    async def connect(self) -> Connection:
        """A connection to the cluster, resolved as :func:`flame.connect` resolves it."""
        return await connect(
            self.endpoint, context=self.context, wire=self.wire, auth_token=self.auth_token
        )


def cluster_options(command: _F) -> _F:
    """Add the shared options to ``command``; it receives them as ``target``, a :class:`Target`."""
    options = (
        click.option(
            "--endpoint",
            metavar="URL",
            default=None,
            help="the cluster's address, like http://127.0.0.1:8080 (default: FLAME_ENDPOINT, "
            "else the current context of ~/.flame/flame.yaml, else ~/.flame/flame-conf.yaml)",
        ),
        click.option(
            "--context",
            metavar="NAME",
            default=None,
            help="use this context of ~/.flame/flame.yaml (or flame-conf.yaml) instead of the "
            "current one; not with --endpoint",
        ),
        click.option(
            "--wire",
            metavar="VERSION",
            default=None,
            help=f"the Flame wire the cluster speaks ({', '.join(WIRES)}; "
            "default: the configuration's, else asked of the cluster)",
        ),
        click.option(
            "--auth-token",
            metavar="TOKEN",
            default=None,
            help="the token the cluster wants (default: FLAME_AUTH_TOKEN, else the config's); "
            "prefer the variable, which other users cannot see",
        ),
        click.option(
            "--json", "as_json", is_flag=True, default=False, help="print JSON for scripts"
        ),
    )

    # wraps() carries the options already on ``command`` over to ``gather``.
    @functools.wraps(command)
    def gather(**kwargs: Any) -> Any:
        target = Target(
            endpoint=kwargs.pop("endpoint"),
            context=kwargs.pop("context"),
            wire=kwargs.pop("wire"),
            auth_token=kwargs.pop("auth_token"),
            json=kwargs.pop("as_json"),
        )
        return command(target=target, **kwargs)

    wrapped: Any = gather
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]
