"""The bytes of function sessions, and the service's handlers, without a cluster."""

from __future__ import annotations

import functools
import pickle
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import flame
from flame.functions import FunctionService, _envelope, _pickling
from flame.functions._client import _remote_error
from flame.functions._envelope import Failed, FormatError, Raised, Returned, Versions
from flame.service import ApplicationContext, SessionContext, TaskContext

_LOCK = threading.Lock()


class _Holder:
    def __init__(self) -> None:
        self.name = "holder"
        self.lock = threading.Lock()

    def method(self) -> str:
        return self.name


def _blame(value: object) -> str | None:
    with pytest.raises(_pickling.PickleFailure) as info:
        _pickling.dumps(value, "it")
    return info.value.where


# ----------------------------------------------------------------------
# What cannot be pickled, and where


def test_the_part_that_cannot_be_pickled_is_named() -> None:
    lock = threading.Lock()
    holder = _Holder()

    def uses_lock() -> bool:
        return lock.locked()

    def uses_holder() -> str:
        return holder.name

    assert _blame(uses_lock) == "closure variable 'lock' (a _thread.lock)"
    assert _blame(uses_holder) == "closure variable 'holder' -> attribute 'lock' (a _thread.lock)"
    assert _blame(lambda: _LOCK.locked()) == "global '_LOCK' (a _thread.lock)"
    assert _blame(functools.partial(print, 1, lock)) == "the partial's argument 1 (a _thread.lock)"
    assert _blame(holder.method) == "the object it is bound to -> attribute 'lock' (a _thread.lock)"
    assert _blame({"fine": 1, "bad": [1, lock]}) == "item 'bad' -> item 1 (a _thread.lock)"
    # The value itself is what pickle refuses: nothing inside to blame.
    assert _blame(x for x in ()) is None


def test_a_pickle_failure_explains_itself() -> None:
    with pytest.raises(_pickling.PickleFailure) as info:
        _pickling.dumps([threading.Lock()], "the list")
    assert info.value.explain() == (
        "the list cannot be pickled: item 0 (a _thread.lock) cannot be pickled: "
        "TypeError: cannot pickle '_thread.lock' object"
    )


def test_a_call_names_the_argument_that_cannot_be_pickled() -> None:
    with pytest.raises(_pickling.PickleFailure) as info:
        _envelope.encode_call(3, (1, threading.Lock()), {}, "input 3 of map")
    assert info.value.where == "argument 1 (a _thread.lock)"
    with pytest.raises(_pickling.PickleFailure) as info:
        _envelope.encode_call(0, (), {"x": 1, "gen": (i for i in ())}, "the call")
    assert info.value.where == "keyword argument 'gen' (a generator)"


# ----------------------------------------------------------------------
# The format


def test_a_call_round_trips_with_its_number() -> None:
    data = _envelope.encode_call(2**40 + 7, (1, "two"), {"three": [3]}, "the call")
    number, args, kwargs = _envelope.decode_call(data)
    assert int.from_bytes(number, "big") == 2**40 + 7
    assert (args, kwargs) == ((1, "two"), {"three": [3]})
    assert _envelope.call_number(data) == number
    assert _envelope.call_number(b"junk") == bytes(8)
    with pytest.raises(FormatError, match="is not a call"):
        _envelope.decode_call(b"hello world, no call")


def test_replies_round_trip() -> None:
    number = (5).to_bytes(8, "big")
    returned = _envelope.decode_reply(_envelope.encode_returned(number, pickle.dumps({"a": 1})))
    assert isinstance(returned, Returned)
    assert (returned.index, returned.value()) == (5, {"a": 1})

    error = ValueError("bad\nvalue")
    raised = _envelope.decode_reply(
        _envelope.encode_raised(number, error, "Traceback ...\n", pickle.dumps(error))
    )
    assert isinstance(raised, Raised)
    assert (raised.index, raised.type_name, raised.text) == (5, "ValueError", "bad\nvalue")
    assert raised.is_exception and raised.traceback == "Traceback ...\n"
    assert pickle.loads(raised.pickled).args == ("bad\nvalue",)
    without = _envelope.decode_reply(_envelope.encode_raised(number, SystemExit(3), "tb", None))
    assert isinstance(without, Raised)
    assert (without.is_exception, without.pickled) == (False, b"")

    failure = flame.FlameError(flame.FlameErrorCode.INVALID_CONFIG, "no such module")
    failed = _envelope.decode_reply(_envelope.encode_failed(number, failure))
    assert isinstance(failed, Failed)
    assert failed.error().code is flame.FlameErrorCode.INVALID_CONFIG
    assert failed.error().message == "no such module"

    versions = Versions("3.11.2", "1.0", 5)
    assert _envelope.decode_reply(_envelope.encode_versions(versions, "f")) == (versions, "f")


@pytest.mark.parametrize(
    "output", [None, b"", b"R123", b"X" + bytes(8) + b"{}", b"F" + bytes(8) + b"not json"]
)
def test_output_that_is_not_a_reply(output: bytes | None) -> None:
    with pytest.raises(FormatError):
        _envelope.decode_reply(output)


def test_the_function_envelope() -> None:
    def double(x: int) -> int:
        return 2 * x

    data = _envelope.encode_function(double, "double")
    header, payload = _envelope.decode_function(data)
    assert header.versions == Versions.here()
    assert (header.function, header.file) == ("double", __file__)
    assert pickle.loads(payload)(4) == 8
    for bad in (None, b"", b"something else", _envelope.MAGIC + b"no end of line"):
        with pytest.raises(FormatError):
            _envelope.decode_function(bad)
    with pytest.raises(FormatError, match="not JSON"):
        _envelope.decode_function(_envelope.MAGIC + b"{nope\n")


def test_versions_that_matter() -> None:
    client = Versions("3.11.9", "0.1.0", 5)
    assert client.mismatch(Versions("3.11.2", "0.1.0", 5)) is None
    assert client.mismatch(Versions("3.12.1", "0.1.0", 5)) == (
        "the client runs Python 3.11.9 and the service Python 3.12.1"
    )
    assert client.mismatch(Versions("3.11.9", "0.2.0", 5)) == (
        "the client has flame-sdk 0.1.0 and the service flame-sdk 0.2.0"
    )
    too_new = Versions("3.11.9", "0.1.0", pickle.HIGHEST_PROTOCOL + 1)
    assert "above the service's highest" in (too_new.mismatch(too_new) or "")


# ----------------------------------------------------------------------
# Remote exceptions in the client


def test_a_remote_exception_is_raised_as_itself_with_its_traceback() -> None:
    error = KeyError("missing")
    raised = Raised(
        1,
        "KeyError",
        "'missing'",
        "Traceback (most recent call last):\n",
        True,
        pickle.dumps(error),
    )
    again = _remote_error(raised, "task 2 of session 1")
    assert type(again) is KeyError and again.args == ("missing",)
    notes = getattr(again, "__notes__", [])
    assert notes == ["Remote traceback (task 2 of session 1):\nTraceback (most recent call last):"]


def test_a_remote_exception_that_does_not_unpickle_here() -> None:
    # A class the client cannot import: pickled by reference to a module it lacks.
    pickled = pickle.dumps(ValueError("x")).replace(b"builtins", b"nowhere_")
    raised = Raised(0, "nowhere_.Error", "it broke", "Traceback: the remote one", True, pickled)
    error = _remote_error(raised, "task 1 of session 1")
    assert isinstance(error, flame.FlameError)
    assert error.code is flame.FlameErrorCode.INTERNAL
    assert error.message.startswith("the function raised nowhere_.Error: it broke (task 1")
    assert "it cannot be unpickled here (ModuleNotFoundError: No module named 'nowhere_')" in (
        error.message
    )
    assert error.message.endswith("Traceback: the remote one")


# ----------------------------------------------------------------------
# The service's handlers, called directly


def _session(common_data: bytes | None) -> SessionContext:
    return SessionContext("1", ApplicationContext("flame-functions"), common_data)


def _task(data: bytes) -> TaskContext:
    return TaskContext("1", "1", data)


async def test_the_service_answers_every_task_even_with_a_bad_session(anyio_backend: str) -> None:
    service = FunctionService()
    service.on_session_enter(_session(b"not a function"))
    for data in (_envelope.PROBE, _envelope.encode_call(4, (1,), {}, "x"), b"junk"):
        reply = _envelope.decode_reply(await service.on_task_invoke(_task(data)))
        assert isinstance(reply, Failed)
        assert "not a function" in reply.message


async def test_the_service_answers_input_that_is_not_a_call(anyio_backend: str) -> None:
    service = FunctionService()
    service.on_session_enter(_session(_envelope.encode_function(abs, "abs")))
    probe = _envelope.decode_reply(await service.on_task_invoke(_task(_envelope.PROBE)))
    assert probe == (Versions.here(), "abs")
    reply = _envelope.decode_reply(await service.on_task_invoke(_task(b"echo hello")))
    assert isinstance(reply, Failed)
    assert reply.code is flame.FlameErrorCode.INVALID_ARGUMENT
    assert "is not a call" in reply.message
    called = _envelope.decode_reply(
        await service.on_task_invoke(_task(_envelope.encode_call(9, (-3,), {}, "x")))
    )
    assert isinstance(called, Returned)
    assert (called.index, called.value()) == (9, 3)


async def test_the_service_reports_a_wrong_number_of_arguments(anyio_backend: str) -> None:
    async def two(a: int, b: int) -> int:
        return a + b

    def gen() -> Iterator[Any]:
        yield 1

    for function in (two, gen):
        service = FunctionService()
        service.on_session_enter(_session(_envelope.encode_function(function, "f")))
        data = _envelope.encode_call(0, (1, 2, 3), {}, "x")
        reply = _envelope.decode_reply(await service.on_task_invoke(_task(data)))
        assert isinstance(reply, Raised)
        assert reply.type_name == "TypeError"
        assert "positional argument" in reply.text
