"""Function sessions: call a Python function as Flame tasks, with Python values in and out.

:meth:`flame.Connection.function_session` opens one (see
:func:`open_function_session`); a :class:`FunctionSession` then runs a task
per call, through the public client API: ``run_task`` for one call,
``as_completed`` for many, so inputs stay lazy and bounded exactly as they
are there.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import sys
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Generic, ParamSpec, TypeVar

import anyio
import attrs

from .. import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_CONCURRENCY,
    Application,
    ApplicationAttributes,
    Connection,
    FinishedTasks,
    FlameError,
    FlameErrorCode,
    Progress,
    ProgressOption,
    Session,
    SessionAttributes,
    SessionState,
    Shim,
    Task,
)
from .._progress import resolve
from . import _envelope, _pickling
from ._envelope import Failed, FormatError, Raised, Versions

__all__ = [
    "DEFAULT_APPLICATION",
    "SERVICE_ARGUMENTS",
    "FunctionResults",
    "FunctionSession",
    "open_function_session",
]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_APPLICATION = "flame-functions"
"""The application a function session runs in unless told otherwise."""

SERVICE_ARGUMENTS = ("-m", "flame.functions")
"""The arguments of the application's command (a Python): run the function service."""

_MISSING: Any = object()

# Seconds between two looks at a session's counters while waiting to close it.
_FIRST_POLL = 0.01
_LAST_POLL = 0.2

log = logging.getLogger("flame.functions")


def _invalid(message: str) -> FlameError:
    return FlameError(FlameErrorCode.INVALID_ARGUMENT, message)


# --------------------------------------------------------------------------
# Exceptions raised remotely


def _attach(error: BaseException, text: str) -> None:
    """Add ``text`` to ``error`` as a note (PEP 678).

    Python 3.10 has no ``add_note``, but prints ``__notes__`` all the same
    once the ``exceptiongroup`` backport is imported, and anyio, which the SDK
    runs on, imports it there.
    """
    if sys.version_info >= (3, 11):
        error.add_note(text)
        return
    notes = getattr(error, "__notes__", None)
    error.__notes__ = [*notes, text] if isinstance(notes, list) else [text]  # type: ignore[attr-defined]


def _remote_error(raised: Raised, where: str) -> BaseException:
    """The exception a call raised, to raise here: itself if it unpickles, else a FlameError."""
    traceback = f"Remote traceback ({where}):\n{raised.traceback.rstrip()}"
    if not raised.is_exception:
        why = "only exceptions derived from Exception are raised again in the client"
    elif not raised.pickled:
        why = "it could not be pickled in the service"
    else:
        try:
            error = pickle.loads(raised.pickled)
        except Exception as exc:
            why = f"it cannot be unpickled here ({_pickling.describe(exc)})"
        else:
            if isinstance(error, Exception):
                _attach(error, traceback)
                return error
            why = f"it unpickled as {_pickling.kind(error)}, not an exception"
    text = f": {raised.text}" if raised.text else ""
    return FlameError(
        FlameErrorCode.INTERNAL,
        f"the function raised {raised.type_name}{text} ({where}); {why}.\n{traceback}",
    )


# --------------------------------------------------------------------------
# Opening a session


async def _find_application(connection: Connection, name: str) -> Application | None:
    # A v0.4 cluster has no GetApplication: the list is the portable way.
    for application in await connection.list_applications():
        if application.name == name:
            return application
    return None


async def _ensure_application(
    connection: Connection, name: str, wanted: ApplicationAttributes, command_given: bool
) -> None:
    """Register the application ``name`` as ``wanted`` unless it is there already."""
    existing = await _find_application(connection, name)
    if existing is None:
        try:
            await connection.register_application(name, wanted)
            return
        except FlameError:
            # Another client may have registered it since we looked.
            existing = await _find_application(connection, name)
            if existing is None:
                raise
    if command_given and existing.command != wanted.command:
        raise FlameError(
            FlameErrorCode.INVALID_STATE,
            f"application {name!r} is registered with command {existing.command!r}, not "
            f"{wanted.command!r}; give this command an application name of its own "
            "(application=...), or unregister the other first",
        )


def _session_attributes(
    application: str, common_data: bytes, options: dict[str, Any]
) -> SessionAttributes:
    known = [
        field.name
        for field in attrs.fields(SessionAttributes)
        if field.name not in ("application", "common_data")
    ]
    if "common_data" in options:
        raise _invalid(
            "a function session carries its function in common_data; give the function "
            "what it needs through its arguments or its closure"
        )
    for key in options:
        if key not in known:
            raise _invalid(f"unknown session option {key!r}; the options are: {', '.join(known)}")
    return SessionAttributes(application=application, common_data=common_data, **options)


async def _probe(session: Session, application: str) -> str:
    """Run the probe task: the function's name, or FlameError saying why it cannot run."""
    where = f"the function service of application {application!r} (session {session.id})"
    try:
        task = await session.run_task(_envelope.PROBE, check=True)
    except FlameError as error:
        raise FlameError(error.code, f"{where} could not start: {error.message}") from None
    try:
        reply = _envelope.decode_reply(task.output)
    except FormatError as error:
        raise FlameError(
            FlameErrorCode.INVALID_CONFIG,
            f"{where} did not answer as the function service does ({error}): the application "
            f"must run its command with the arguments {' '.join(SERVICE_ARGUMENTS)}",
        ) from None
    if isinstance(reply, Failed):
        raise FlameError(reply.code, reply.message)
    if not isinstance(reply, tuple):
        raise FlameError(FlameErrorCode.INTERNAL, f"{where} answered the probe with a call's reply")
    versions, name = reply
    mismatch = Versions.here().mismatch(versions)
    if mismatch is not None:
        raise FlameError(FlameErrorCode.INVALID_CONFIG, f"{where} cannot run it: {mismatch}")
    return name


async def open_function_session(
    connection: Connection,
    function: Callable[..., Any],
    /,
    *,
    application: str = DEFAULT_APPLICATION,
    command: str | None = None,
    **session_options: Any,
) -> FunctionSession[Any, Any]:
    """Open a session that runs ``function``; what :meth:`flame.Connection.function_session` does.

    Before any call, the function is pickled (FlameError ``INVALID_ARGUMENT``
    naming the part that cannot be) and the options are checked. Then the
    application is registered if it is not yet, the session is opened with
    the function in its common data, and a probe task checks that the
    service can run it; if it cannot, the session is closed again and
    FlameError says why (``INVALID_CONFIG`` for a Python or flame-sdk version
    that differs, or a function the service cannot load).
    """
    if not callable(function):
        raise _invalid(f"function must be callable, not {_pickling.kind(function)}")
    name = _envelope.function_name(function)
    try:
        common_data = _envelope.encode_function(function, name)
    except _pickling.PickleFailure as failure:
        raise _invalid(
            f"{failure.explain()}. Functions run in another process: what one uses must be "
            "picklable, or be made inside it"
        ) from None
    attributes = _session_attributes(application, common_data, session_options)
    wanted = ApplicationAttributes(
        shim=Shim.GRPC,
        command=sys.executable if command is None else command,
        arguments=list(SERVICE_ARGUMENTS),
    )
    await _ensure_application(connection, application, wanted, command is not None)
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(await connection.create_session(attributes))
        name = await _probe(session, application)
        stack.pop_all()
    return FunctionSession(connection, session, name)


# --------------------------------------------------------------------------
# Replies


def _outcome(task: Task, indexed: bool) -> tuple[int, Any]:
    """``(index, value)`` of a finished call's task, or raise what the call raised.

    ``indexed``: the call is one of many, and messages name its input.
    """
    where = f"task {task.id} of session {task.session_id}"
    try:
        reply = _envelope.decode_reply(task.output)
    except FormatError as error:
        raise FlameError(
            FlameErrorCode.INTERNAL,
            f"{where} did not answer as the function service does: {error}",
        ) from None
    if isinstance(reply, tuple):
        raise FlameError(FlameErrorCode.INTERNAL, f"{where} answered a call as the probe")
    if indexed:
        where = f"input {reply.index}, {where}"
    if isinstance(reply, Raised):
        raise _remote_error(reply, where)
    if isinstance(reply, Failed):
        raise FlameError(reply.code, f"{where}: {reply.message}")
    try:
        return reply.index, reply.value()
    except Exception as error:
        raise FlameError(
            FlameErrorCode.INTERNAL,
            f"the value returned for {where} cannot be unpickled here: {_pickling.describe(error)}",
        ) from None


# --------------------------------------------------------------------------
# The session


class FunctionSession(Generic[P, R]):
    """A session whose tasks are calls of one Python function.

    Get one from :meth:`flame.Connection.function_session`; leaving its
    ``async with`` closes the session::

        async with await conn.function_session(estimate, slots=1) as f:
            one = await f(seed=1, samples=1000)
            many = await f.map(range(100), concurrency=32)

    Each call is one task: its arguments are pickled (cloudpickle) into the
    task's input, and its value pickled back into the task's output. A call
    whose function raised raises the same exception here, with the remote
    traceback attached as a note (``__notes__``); one that cannot be
    re-raised as itself raises FlameError ``INTERNAL`` with its text.
    Arguments that cannot be pickled raise FlameError ``INVALID_ARGUMENT``
    before their task is made.
    """

    def __init__(self, connection: Connection, session: Session, function: str) -> None:
        self._connection = connection
        self._session = session
        self._function = function

    @property
    def session(self) -> Session:
        """The Flame session the calls run in."""
        return self._session

    @property
    def function(self) -> str:
        """The function's name, as the service loaded it."""
        return self._function

    def __repr__(self) -> str:
        return f"<FunctionSession of {self._function} in session {self._session.id}>"

    async def __aenter__(self) -> FunctionSession[P, R]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.close()
            return
        if not issubclass(exc_type, Exception):
            # Cancelled or interrupted: one attempt, as a plain session does.
            await self._session.__aexit__(exc_type, exc, tb)
            return
        # A call raised (say): wait, for a while, for the calls it cancelled
        # here to end on the cluster, but never hide why the block ended.
        with anyio.move_on_after(DEFAULT_CALL_TIMEOUT, shield=True) as scope:
            try:
                await self.close()
            except FlameError as error:
                log.warning("session %s was left open: %s", self._session.id, error)
        if scope.cancelled_caught:
            log.warning(
                "session %s was left open: calls were still running in it after %g s",
                self._session.id,
                DEFAULT_CALL_TIMEOUT,
            )

    async def close(self) -> None:
        """Close the session, once the calls still running in it have ended.

        A call cancelled here (by a call that raised in :meth:`map`, by
        leaving :meth:`as_completed` early, by a cancelled scope) still runs
        to its end on the cluster, and a cluster closes only a session none of
        whose tasks is pending or running: this waits for them, asking the
        cluster for the session's counters every so often (at most every
        0.2 s).
        """
        delay = _FIRST_POLL
        refused_when_idle = 0
        while True:
            try:
                await self._session.close()
                return
            except FlameError as error:
                if error.code is not FlameErrorCode.INVALID_STATE:
                    raise
                refused = error
            current = await self._connection.get_session(self._session.id)
            if current.state is SessionState.CLOSED:
                return
            if not (current.pending or current.running):
                # The last task may have ended between the two calls: once
                # more, but a refusal with nothing running is not for waiting.
                refused_when_idle += 1
                if refused_when_idle > 1:
                    raise refused
            while current.pending or current.running:
                await anyio.sleep(delay)
                delay = min(delay * 2, _LAST_POLL)
                current = await self._connection.get_session(self._session.id)

    # -- one call --------------------------------------------------------

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function once, as one task, and return its value (or raise what it raised)."""
        data = self._encode(0, args, kwargs, f"the arguments of {self._function}")
        task = await self._session.run_task(data, check=True)
        value: R = _outcome(task, False)[1]
        return value

    # -- many calls ------------------------------------------------------

    async def map(
        self,
        inputs: Iterable[Any] | AsyncIterable[Any],
        /,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: ProgressOption = None,
    ) -> list[R]:
        """Call the function on each input; the values, in the order of ``inputs``.

        ``inputs`` is any iterable or async iterable, read lazily as in
        :meth:`flame.SessionClient.run_tasks`: a new input is taken only when
        one of the ``concurrency`` calls in flight has finished. The first
        call that raises cancels the others, and its exception is raised.
        ``progress`` is that of ``run_tasks`` (see :class:`flame.Progress`),
        labelled with the function's name unless it says otherwise::

            values = await f.map(range(10_000), progress=True)
        """
        progress = self._progress(progress, inputs)
        return await self._gather(self._calls(inputs, False, "map"), concurrency, progress)

    async def starmap(
        self,
        inputs: Iterable[tuple[Any, ...]] | AsyncIterable[tuple[Any, ...]],
        /,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: ProgressOption = None,
    ) -> list[R]:
        """Like :meth:`map`, but each input is a tuple of arguments: ``f(*input)``."""
        progress = self._progress(progress, inputs)
        return await self._gather(self._calls(inputs, True, "starmap"), concurrency, progress)

    def as_completed(
        self,
        inputs: Iterable[Any] | AsyncIterable[Any],
        /,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        star: bool = False,
        progress: ProgressOption = None,
    ) -> contextlib.AbstractAsyncContextManager[FunctionResults[R]]:
        """Call the function on each input; iterate ``(index, value)`` as the calls finish.

        ``index`` is the input's place in ``inputs``, counted from 0. Nothing
        is kept once handed over, so memory stays bounded by ``concurrency``
        however many inputs there are::

            async with f.as_completed(range(10_000), concurrency=64) as results:
                async for index, value in results:
                    print(index, value)

        The first call that raises cancels the others, and its exception is
        raised by the ``async for``; leaving the block early cancels what is
        still running. With ``star=True`` each input is a tuple of arguments.
        ``progress`` is that of :meth:`map`, shown for the ``async with``.
        """
        progress = self._progress(progress, inputs)
        return self._run(self._calls(inputs, star, "as_completed"), concurrency, progress)

    # -- machinery -------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _run(
        self,
        calls: Iterator[bytes] | AsyncIterator[bytes],
        concurrency: int,
        progress: Progress | None,
    ) -> AsyncIterator[FunctionResults[R]]:
        run = self._session.as_completed(calls, concurrency=concurrency, progress=progress)
        async with run as finished:
            yield FunctionResults(finished)

    async def _gather(
        self,
        calls: Iterator[bytes] | AsyncIterator[bytes],
        concurrency: int,
        progress: Progress | None,
    ) -> list[R]:
        results: list[Any] = []
        async with self._run(calls, concurrency, progress) as finished:
            async for index, value in finished:
                if index >= len(results):
                    results.extend([_MISSING] * (index + 1 - len(results)))
                results[index] = value
        return results

    def _progress(self, option: object, inputs: object) -> Progress | None:
        """``option`` with the total of ``inputs`` (before they become calls) and a label."""
        progress = resolve(option, inputs)
        if progress is not None and progress.description is None:
            progress = attrs.evolve(progress, description=self._function)
        return progress

    def _calls(
        self, inputs: object, star: bool, caller: str
    ) -> Iterator[bytes] | AsyncIterator[bytes]:
        """The task inputs of ``inputs``, encoded one at a time as they are taken."""
        if isinstance(inputs, AsyncIterable):
            return self._async_calls(inputs, star, caller)
        if isinstance(inputs, Iterable):
            return self._sync_calls(inputs, star, caller)
        what = "tuples of arguments" if star else "arguments"
        raise _invalid(
            f"{caller} takes an iterable or async iterable of {what}, not {_pickling.kind(inputs)}"
        )

    def _sync_calls(self, inputs: Iterable[Any], star: bool, caller: str) -> Iterator[bytes]:
        for index, item in enumerate(inputs):
            yield self._encode_input(index, item, star, caller)

    async def _async_calls(
        self, inputs: AsyncIterable[Any], star: bool, caller: str
    ) -> AsyncIterator[bytes]:
        index = 0
        async for item in inputs:
            yield self._encode_input(index, item, star, caller)
            index += 1

    def _encode_input(self, index: int, item: Any, star: bool, caller: str) -> bytes:
        if not star:
            return self._encode(index, (item,), {}, f"input {index} of {caller}")
        if not isinstance(item, (tuple, list)):
            raise _invalid(
                f"input {index} of {caller} is {_pickling.kind(item)}; each input must be a "
                "tuple of arguments, such as (x, y)"
            )
        return self._encode(index, tuple(item), {}, f"input {index} of {caller}")

    def _encode(
        self, index: int, args: tuple[Any, ...], kwargs: dict[str, Any], what: str
    ) -> bytes:
        try:
            return _envelope.encode_call(index, args, kwargs, what)
        except _pickling.PickleFailure as failure:
            raise _invalid(f"{failure.explain()}; no task was made for it") from None


class FunctionResults(Generic[R]):
    """The ``(index, value)`` pairs of :meth:`FunctionSession.as_completed`, as calls finish.

    An async iterator, used once, inside the ``async with`` that gave it.
    """

    def __init__(self, finished: FinishedTasks) -> None:
        self._finished = finished

    @property
    def taken(self) -> int:
        """How many inputs have been taken so far."""
        return self._finished.taken

    def __aiter__(self) -> FunctionResults[R]:
        return self

    async def __anext__(self) -> tuple[int, R]:
        task = await self._finished.__anext__()
        index, value = _outcome(task, True)
        return index, value
