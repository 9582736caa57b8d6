"""Flame: run very many short tasks over a cluster, from asyncio or trio."""

from ._errors import FlameError, FlameErrorCode

__all__ = ["FlameError", "FlameErrorCode"]
