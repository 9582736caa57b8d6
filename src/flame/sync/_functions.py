"""Function sessions, blocking: :class:`flame.functions.FunctionSession` with no ``await``.

Made by :meth:`flame.sync.Connection.function_session`. Each method is the
async one, called on the portal; inputs given as an iterable that is not a
list or tuple are read in the calling thread, as for
:meth:`flame.sync.SessionClient.run_tasks`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Iterable
from contextlib import AbstractContextManager
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from .. import DEFAULT_CONCURRENCY, FlameError, ProgressOption
from .. import functions as aio
from ._caller import Caller
from ._iterators import AsCompleted
from ._portal import Portal
from ._pump import Pump
from ._session import Session, bind

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["FunctionResults", "FunctionSession"]

log = logging.getLogger("flame.sync")

P = ParamSpec("P")
R = TypeVar("R")


class FunctionSession(Generic[P, R]):
    """A session whose tasks are calls of one Python function: blocking.

    :class:`flame.functions.FunctionSession` with no ``await``; leaving its
    ``with`` closes the session::

        with conn.function_session(estimate, slots=1) as f:
            one = f(seed=1, samples=1000)
            many = f.map(range(100), concurrency=32)

    A call whose function raised raises the same exception here.
    """

    def __init__(
        self, connection: Connection, portal: Portal, functions: aio.FunctionSession[P, R]
    ) -> None:
        # Made by Connection.function_session.
        self._connection = connection
        self._portal = portal
        self._functions = functions

    @property
    def session(self) -> Session:
        """The Flame session the calls run in."""
        return bind(self._connection, self._portal, self._functions.session)

    @property
    def function(self) -> str:
        """The function's name, as the service loaded it."""
        return self._functions.function

    def __repr__(self) -> str:
        return "<flame.sync." + repr(self._functions)[1:]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function once, as one task, and return its value (or raise what it raised)."""
        return self._portal.call(partial(self._functions, *args, **kwargs))

    def map(
        self,
        inputs: Iterable[Any] | AsyncIterable[Any],
        /,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: ProgressOption = None,
    ) -> list[R]:
        """Call the function on each input; the values, in input order (``FunctionSession.map``).

        ``progress`` is that of :meth:`flame.sync.SessionClient.run_tasks`,
        labelled with the function's name unless it says otherwise.
        """
        caller = Caller(self._portal)
        run = partial(
            self._functions.map,
            caller.inputs(inputs),
            concurrency=concurrency,
            progress=caller.progress(progress, inputs),
        )
        return self._portal.call(run, caller)

    def starmap(
        self,
        inputs: Iterable[tuple[Any, ...]] | AsyncIterable[tuple[Any, ...]],
        /,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: ProgressOption = None,
    ) -> list[R]:
        """Like :meth:`map`, but each input is a tuple of arguments: ``f(*input)``."""
        caller = Caller(self._portal)
        run = partial(
            self._functions.starmap,
            caller.inputs(inputs),
            concurrency=concurrency,
            progress=caller.progress(progress, inputs),
        )
        return self._portal.call(run, caller)

    def as_completed(
        self,
        inputs: Iterable[Any] | AsyncIterable[Any],
        /,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        star: bool = False,
        progress: ProgressOption = None,
    ) -> AbstractContextManager[FunctionResults[R]]:
        """Call the function on each input; iterate ``(index, value)`` as the calls finish::

        with f.as_completed(range(10_000), concurrency=64) as results:
            for index, value in results:
                print(index, value)
        """
        caller = Caller(self._portal)
        shown = caller.progress(progress, inputs)
        inputs = caller.inputs(inputs)

        async def start() -> Any:
            # On the loop: the run's primitives belong to its event loop.
            return self._functions.as_completed(
                inputs, concurrency=concurrency, star=star, progress=shown
            )

        return AsCompleted(self._portal, caller, self._portal.call(start), self, FunctionResults)

    def close(self) -> None:
        """Close the session, once the calls still running in it have ended."""
        self._portal.call(self._functions.close)

    def __enter__(self) -> FunctionSession[P, R]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._portal.call(partial(self._functions.__aexit__, exc_type, exc, tb))
        except FlameError as error:
            if exc_type is None:
                raise
            # Not even tried: the connection itself is closed.
            log.warning("session %s was left open: %s", self._functions.session.id, error)


class FunctionResults(Generic[R]):
    """The ``(index, value)`` pairs of :meth:`FunctionSession.as_completed`, as calls finish.

    An iterator, used once, inside the ``with`` that gave it.
    """

    def __init__(self, pump: Pump[tuple[int, R]], results: aio.FunctionResults[R]) -> None:
        self._pump = pump
        self._results = results

    @property
    def taken(self) -> int:
        """How many inputs have been taken so far."""
        return self._results.taken

    def __iter__(self) -> FunctionResults[R]:
        return self

    def __next__(self) -> tuple[int, R]:
        return self._pump.next()
