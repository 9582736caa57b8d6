"""The service that runs a function session's tasks: one Python function, called per task.

Registered by :meth:`flame.Connection.function_session` as an application
whose command is a Python interpreter and whose arguments are
``-m flame.functions``. It is an ordinary :class:`~flame.service.FlameService`,
so it runs under whatever service contract the runtime speaks:

- ``on_session_enter`` reads the function from the session's common data,
  after checking that the client's Python (major.minor) and flame-sdk
  versions are this process's. It never refuses the session: a problem
  (a version mismatch, a function that does not unpickle here) is kept,
  and every task of the session answers with it, the session's probe first,
  so the client hears of it as a FlameError when the session opens.
- ``on_task_invoke`` unpickles the call's arguments, calls the function (a
  plain one in a worker thread, an ``async def`` one on the event loop) and
  answers with its pickled value, or the pickled exception it raised with
  its traceback. The task succeeds either way: see ``docs/functions.md``.

``python -m flame.functions --backend trio`` runs async functions under trio.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import logging
import pickle
import traceback
import types
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread

from .._errors import FlameError, FlameErrorCode
from ..service import FlameService, SessionContext, TaskContext, run
from . import _envelope, _pickling
from ._envelope import FormatError, Versions

__all__ = ["FunctionService", "main"]

log = logging.getLogger("flame.functions.service")

_NO_NUMBER = bytes(8)


def _is_async(function: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(function):
        return True
    # An object whose __call__ is an async method.
    call = getattr(function, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(call)


def _load_hint(error: BaseException) -> str:
    if isinstance(error, ImportError):
        return (
            ". Functions and classes of an importable module are pickled by reference, so "
            "the service must be able to import that module: install it where the service "
            "runs, set PYTHONPATH in the application's environments, or have cloudpickle "
            "send the module by value (cloudpickle.register_pickle_by_value(module)) before "
            "opening the session"
        )
    return ""


# What cloudpickle puts in place of the file of the code it sends by value.
_DYNAMIC_FILE = "<dynamic-code>"


def _code_in(code: types.CodeType, filename: str) -> types.CodeType:
    constants = tuple(
        _code_in(constant, filename)
        if isinstance(constant, types.CodeType) and constant.co_filename == _DYNAMIC_FILE
        else constant
        for constant in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=constants)


def _restore_file(function: Callable[..., Any], filename: str | None) -> None:
    """Give the function sent by value, and those of its module it uses, their file back.

    cloudpickle sends code without the name of its file, so a traceback
    would show ``File "<dynamic-code>"``; with the name, it shows the file
    and line (and, where the file is there, the line's text). Functions
    the function reaches through its globals or closure, and which come from
    the same module, are taken to come from the same file.
    """
    function = getattr(function, "__func__", function)
    if filename is None or not isinstance(function, types.FunctionType):
        return
    module = function.__module__
    cells = [cell.cell_contents for cell in function.__closure__ or () if _filled(cell)]
    for candidate in [function, *function.__globals__.values(), *cells]:
        if (
            isinstance(candidate, types.FunctionType)
            and candidate.__module__ == module
            and candidate.__code__.co_filename == _DYNAMIC_FILE
        ):
            candidate.__code__ = _code_in(candidate.__code__, filename)


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def _raised(number: bytes, error: BaseException) -> bytes:
    """The reply for a call that raised ``error`` (its first frame is the caller's: dropped)."""
    frames = error.__traceback__
    text = "".join(
        traceback.format_exception(type(error), error, frames.tb_next if frames else None)
    )
    pickled: bytes | None
    try:
        pickled = _pickling.dumps(error, "the exception")
        # An exception whose class takes other arguments than it passes on
        # pickles but does not unpickle: find out here, not in the client.
        pickle.loads(pickled)
    except Exception:
        pickled = None
    return _envelope.encode_raised(number, error, text, pickled)


def _returned(number: bytes, value: object, name: str) -> bytes:
    try:
        pickled = _pickling.dumps(value, f"the result of {name} ({_pickling.kind(value)})")
    except _pickling.PickleFailure as failure:
        error = FlameError(
            FlameErrorCode.INTERNAL,
            f"{failure.explain()}; return something picklable, or state that the client "
            "can rebuild it from",
        )
        return _envelope.encode_failed(number, error)
    return _envelope.encode_returned(number, pickled)


def _call_in_thread(
    function: Callable[..., Any],
    number: bytes,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    name: str,
) -> bytes | Awaitable[Any]:
    # Run in a worker thread: nothing raised here is a cancellation.
    try:
        value = function(*args, **kwargs)
    except BaseException as error:
        return _raised(number, error)
    if inspect.isawaitable(value):
        # A plain function that returned a coroutine: awaited on the loop.
        return value
    return _returned(number, value, name)


class FunctionService(FlameService):
    """Calls the session's function once per task; see the module's docstring."""

    def __init__(self) -> None:
        self._function: Callable[..., Any] | None = None
        self._name = "?"
        self._is_async = False
        self._problem: FlameError | None = None

    def on_session_enter(self, ctx: SessionContext) -> None:
        self._function, self._problem, self._name = None, None, "?"
        try:
            header, payload = _envelope.decode_function(ctx.common_data)
        except FormatError as error:
            self._problem = FlameError(FlameErrorCode.INVALID_ARGUMENT, str(error))
            return
        self._name = header.function
        here = Versions.here()
        mismatch = header.versions.mismatch(here)
        if mismatch is not None:
            self._problem = FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"the function {self._name} cannot run in the service of application "
                f"{ctx.application.name!r}: {mismatch}. The service must run the client's "
                "Python (major.minor) with the client's flame-sdk: open the session with "
                "command= that Python, under an application name of its own",
            )
            return
        try:
            function = pickle.loads(payload)
        except Exception as error:
            self._problem = FlameError(
                FlameErrorCode.INVALID_CONFIG,
                f"the function {self._name} could not be loaded in the service of application "
                f"{ctx.application.name!r}: {_pickling.describe(error)}{_load_hint(error)}",
            )
            log.warning("session %s: %s", ctx.session_id, self._problem.message)
            return
        _restore_file(function, header.file)
        if not callable(function):
            self._problem = FlameError(
                FlameErrorCode.INVALID_ARGUMENT,
                f"the session's function is {_pickling.kind(function)}, which cannot be called",
            )
            return
        self._function = function
        self._is_async = _is_async(function)

    async def on_task_invoke(self, ctx: TaskContext) -> bytes:
        data = ctx.input or b""
        if _envelope.is_probe(data):
            if self._problem is not None:
                return _envelope.encode_failed(_NO_NUMBER, self._problem)
            return _envelope.encode_versions(Versions.here(), self._name)
        number = _envelope.call_number(data)
        function = self._function
        if self._problem is not None or function is None:
            problem = self._problem or FlameError(
                FlameErrorCode.INVALID_STATE, "the service has no function: no session entered"
            )
            return _envelope.encode_failed(number, problem)
        try:
            number, args, kwargs = _envelope.decode_call(data)
        except FormatError as error:
            return _envelope.encode_failed(
                number, FlameError(FlameErrorCode.INVALID_ARGUMENT, str(error))
            )
        except Exception as error:
            return _envelope.encode_failed(
                number,
                FlameError(
                    FlameErrorCode.INVALID_CONFIG,
                    f"the arguments of task {ctx.task_id} could not be unpickled in the "
                    f"service: {_pickling.describe(error)}{_load_hint(error)}",
                ),
            )
        if self._is_async:
            return await self._call_async(number, function, args, kwargs)
        reply = await anyio.to_thread.run_sync(
            functools.partial(_call_in_thread, function, number, args, kwargs, self._name)
        )
        if isinstance(reply, bytes):
            return reply
        return await self._await(number, reply)

    async def _call_async(
        self,
        number: bytes,
        function: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> bytes:
        try:
            value = await function(*args, **kwargs)
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as error:
            return _raised(number, error)
        return _returned(number, value, self._name)

    async def _await(self, number: bytes, awaitable: Awaitable[Any]) -> bytes:
        try:
            value = await awaitable
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as error:
            return _raised(number, error)
        return _returned(number, value, self._name)

    def on_session_leave(self) -> None:
        self._function, self._problem = None, None


def main(argv: list[str] | None = None) -> None:
    """``python -m flame.functions``: serve function sessions until the executor stops us."""
    parser = argparse.ArgumentParser(
        prog="python -m flame.functions",
        description="The Flame service that runs the Python functions of function sessions.",
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="the event loop async functions run on (default asyncio)",
    )
    args = parser.parse_args(argv)
    run(FunctionService(), backend=args.backend)
