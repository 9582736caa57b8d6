"""The ``flame`` command: its groups and commands, gathered in one place."""

from __future__ import annotations

from ._applications import register, unregister
from ._demo import demo
from ._groups import command_group
from ._list import list_group
from ._local import local
from ._sessions import close, delete
from ._view import view_group
from ._watch import watch

__all__ = ["flame"]

flame = command_group("flame", "The Flame SDK's command line.")
for command in (local, demo, list_group, view_group, watch, close, delete, register, unregister):
    flame.add_command(command)
