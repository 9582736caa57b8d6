"""Pickling with errors that say which object could not be pickled.

Everything a function session sends is pickled with cloudpickle: functions
and classes defined in ``__main__``, in a closure or in a lambda travel by
value, and importable ones by reference. Plain pickle would be a few
microseconds cheaper per call, but it pickles a class of the caller's script
by reference, and the other side cannot find it; cloudpickle costs about
3 µs more per call, against a task's hundreds.

When pickling fails, pickle's own message names a type (``cannot pickle
'_thread.lock' object``) but not where it was. :func:`dumps` then looks
through the object (closure variables, globals a function uses, defaults,
attributes, items) for the first part that fails on its own, and says where
it is: ``closure variable 'lock' (a _thread.lock)``.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterable, Iterator

import cloudpickle

__all__ = [
    "PROTOCOL",
    "PickleFailure",
    "describe",
    "dumps",
    "find_unpicklable",
    "kind",
    "type_name",
]

#: The pickle protocol of everything a function session sends.
PROTOCOL: int = cloudpickle.DEFAULT_PROTOCOL

# How deep find_unpicklable looks, and how many parts it tries in all: enough
# for a closure holding an object holding a list, not a walk of a whole graph.
_MAX_DEPTH = 4
_MAX_TRIES = 500


class PickleFailure(Exception):
    """``what`` could not be pickled; ``where`` names the part that failed, if found."""

    def __init__(self, what: str, where: str | None, error: BaseException) -> None:
        super().__init__(what, where, error)
        self.what = what
        self.where = where
        self.error = error

    def explain(self) -> str:
        """``<what> cannot be pickled: <where> cannot be pickled: <pickle's message>``."""
        place = f": {self.where} cannot be pickled" if self.where else ""
        return f"{self.what} cannot be pickled{place}: {describe(self.error)}"


def describe(error: BaseException) -> str:
    """An exception as ``Type: text`` (``Type`` alone when it has no text)."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def type_name(cls: type) -> str:
    """``list``, ``mymodule.Point``: a class's name, with its module unless builtin or main."""
    module = cls.__module__
    return (
        cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"
    )


def kind(value: object) -> str:
    """``a list``, ``a mymodule.Point``: what ``value`` is, for messages."""
    return f"a {type_name(type(value))}"


def dumps(value: object, what: str, parts: Iterable[tuple[str, object]] | None = None) -> bytes:
    """``value`` pickled with cloudpickle; :class:`PickleFailure` saying where it failed.

    ``parts`` names the parts of ``value`` to blame first (the arguments of
    a call, say), instead of those :func:`find_unpicklable` would see.
    """
    try:
        data: bytes = cloudpickle.dumps(value, protocol=PROTOCOL)
    except Exception as error:
        raise PickleFailure(what, find_unpicklable(value, parts), error) from None
    return data


def _picklable(value: object) -> bool:
    try:
        cloudpickle.dumps(value, protocol=PROTOCOL)
    except Exception:
        return False
    return True


def _names_used(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            # A comprehension or nested function reads globals too.
            yield from _names_used(constant)


def _parts(value: object) -> Iterator[tuple[str, object]]:
    """The named parts of ``value`` that pickling it pickles too, as far as can be told."""
    if isinstance(value, types.FunctionType):
        code = value.__code__
        for name, cell in zip(code.co_freevars, value.__closure__ or (), strict=True):
            try:
                yield f"closure variable {name!r}", cell.cell_contents
            except ValueError:  # an empty cell
                continue
        seen: set[str] = set()
        for name in _names_used(code):
            if name in value.__globals__ and name not in seen:
                seen.add(name)
                yield f"global {name!r}", value.__globals__[name]
        for position, default in enumerate(value.__defaults__ or ()):
            yield f"default {position}", default
        for name, default in (value.__kwdefaults__ or {}).items():
            yield f"default of {name!r}", default
    elif isinstance(value, types.MethodType):
        yield "the object it is bound to", value.__self__
        yield "its function", value.__func__
    elif isinstance(value, functools.partial):
        yield "the partial's function", value.func
        for position, argument in enumerate(value.args):
            yield f"the partial's argument {position}", argument
        for name, argument in value.keywords.items():
            yield f"the partial's argument {name!r}", argument
    elif isinstance(value, (list, tuple, set, frozenset)):
        for position, item in enumerate(value):
            yield f"item {position}", item
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"item {key!r}", item
    elif not isinstance(value, (type, types.ModuleType)):
        attributes = getattr(value, "__dict__", None)
        if isinstance(attributes, dict):
            for name, item in attributes.items():
                yield f"attribute {name!r}", item


def find_unpicklable(
    value: object, parts: Iterable[tuple[str, object]] | None = None
) -> str | None:
    """Where in ``value`` pickling fails: the deepest part found that fails by itself.

    Returns a path such as ``closure variable 'state' -> attribute 'lock' (a
    _thread.lock)``, or None when no part can be blamed (the value itself is
    what pickle refuses). ``parts``, if given, are the top-level parts.
    """
    tries = [0]
    visited: set[int] = set()

    def search(current: object, depth: int, named: Iterable[tuple[str, object]]) -> str | None:
        if depth >= _MAX_DEPTH or id(current) in visited:
            return None
        visited.add(id(current))
        for name, part in named:
            tries[0] += 1
            if tries[0] > _MAX_TRIES:
                return None
            if _picklable(part):
                continue
            deeper = search(part, depth + 1, _parts(part))
            return f"{name} -> {deeper}" if deeper else f"{name} ({kind(part)})"
        return None

    return search(value, 0, _parts(value) if parts is None else parts)
