"""The Flame wires the client speaks, one codec each, behind one interface.

Flame changed its wire with every release: v0.5 renumbered the application
and the shims, v0.6 moved everything to the package ``flame.v1``, lets the
client choose session ids and counts time in milliseconds. The client keeps
one neutral model (:mod:`flame._types`) and asks the codec of the wire its
cluster speaks to turn each call into bytes and each reply back:

``_base``
    :class:`Wire`, what every codec offers (a :class:`Call` per Frontend
    call: its path, its request's bytes, how to read the reply), the neutral
    :class:`SessionFields`, and the refusals every codec words alike.
``v04``, ``v05``, ``v06``
    one codec per wire, each owning its generated classes, paths, time
    unit, id rules, the statuses its cluster refuses with, and what the
    wire cannot express (refused before anything is sent). v0.5 is v0.6
    less what it lacks, so :class:`~.v05.V05Wire` derives from
    :class:`~.v06.V06Wire`.
``probe``
    which wire a server speaks, found by two cheap calls.

A codec's module imports its generated code when the codec is made
(:func:`wire_for`), so ``import flame`` loads none, and a client loads only
its cluster's. The calls made once or more per task (CreateTask, GetTask,
WatchTask) use the hand-written codec of :mod:`flame._wire` on every wire:
their messages have the same numbers on all three.
"""

from __future__ import annotations

from ._base import Call, SessionFields, Wire

__all__ = ["WIRES", "Call", "SessionFields", "Wire", "check_wire_name", "wire_for"]

WIRES = ("v0.4", "v0.5", "v0.6")
"""The wires the client speaks, oldest first."""

_made: dict[str, Wire] = {}


def check_wire_name(value: object, where: str = "wire") -> str:
    """``value`` as one of :data:`WIRES` (``"0.6"`` and ``"v0.6.0"`` are accepted too).

    Raises FlameError ``INVALID_CONFIG`` for anything else.
    """
    from .._errors import FlameError, FlameErrorCode

    if isinstance(value, str):
        text = value.strip().lower()
        text = text if text.startswith("v") else "v" + text
        for wire in WIRES:
            if text == wire or text == wire + ".0":
                return wire
    raise FlameError(
        FlameErrorCode.INVALID_CONFIG,
        f"{where} must be one of {', '.join(map(repr, WIRES))}, not {value!r}",
    )


def wire_for(name: str) -> Wire:
    """The codec of the wire ``name`` (one of :data:`WIRES`), made once per process."""
    wire = _made.get(name)
    if wire is None:
        if name == "v0.4":
            from .v04 import V04Wire as cls
        elif name == "v0.5":
            from .v05 import V05Wire as cls  # type: ignore[assignment]
        else:
            from .v06 import V06Wire as cls  # type: ignore[assignment]
        wire = _made[name] = cls()
    return wire
