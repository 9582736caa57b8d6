"""The error codes: their numbers, and how a refused Result is read."""

from __future__ import annotations

import pickle

import pytest

import flame
from flame import FlameError, FlameErrorCode
from flame._errors import code_for_result


def test_the_codes_have_the_official_clients_numbers() -> None:
    # 0-3 from the API reference, 4-5 from the current official client, then ours.
    assert {code.name: int(code) for code in FlameErrorCode} == {
        "INVALID_CONFIG": 0,
        "INVALID_STATE": 1,
        "INVALID_ARGUMENT": 2,
        "INTERNAL": 3,
        "ALREADY_EXISTS": 4,
        "NOT_FOUND": 5,
        "UNAVAILABLE": 6,
        "TIMEOUT": 7,
        "UNIMPLEMENTED": 8,
    }


def test_the_table_is_documented_once_with_every_code() -> None:
    doc = FlameErrorCode.__doc__ or ""
    for code in FlameErrorCode:
        assert f"{int(code)}     {code.name}" in doc


def test_a_code_survives_as_an_integer() -> None:
    error = FlameError(4, "taken")  # type: ignore[arg-type]
    assert error.code is FlameErrorCode.ALREADY_EXISTS
    again = pickle.loads(pickle.dumps(FlameError(FlameErrorCode.NOT_FOUND, "gone")))
    assert (again.code, int(again.code)) == (FlameErrorCode.NOT_FOUND, 5)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        # The embedded cluster, a v0.4-like server, and a v0.6 fs / sqlite one.
        ("application 'a' is already registered; unregister it first", "ALREADY_EXISTS"),
        ("application a already exists", "ALREADY_EXISTS"),
        ("Application 'a' already exists", "ALREADY_EXISTS"),
        ("failed to register application: UNIQUE constraint failed", "ALREADY_EXISTS"),
        ("application spec is missing", "INVALID_ARGUMENT"),
        ("the application name is empty; give the application a name", "INVALID_ARGUMENT"),
        ("application 'a' has an unknown shim 9", "INVALID_ARGUMENT"),
        ("application 'a' has no spec; send an ApplicationSpec", "INVALID_ARGUMENT"),
        ("application 'a' is not registered", "NOT_FOUND"),
        ("1 open sessions in the application", "INVALID_STATE"),
        ("", "INVALID_STATE"),
        (None, "INVALID_STATE"),
    ],
)
def test_a_refused_result_is_read_from_its_text(message: str | None, code: str) -> None:
    assert code_for_result(message) is FlameErrorCode[code]


def test_the_codes_are_exported() -> None:
    assert flame.FlameErrorCode is FlameErrorCode
