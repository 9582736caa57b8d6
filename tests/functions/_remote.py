"""Functions the tests run in the function service (sent by value: see conftest)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import sniffio


class Refused(Exception):
    """An exception of the tests' own: it must come back as itself."""


class TwoArguments(Exception):
    """Pickles, but does not unpickle: its __init__ takes two arguments, it passes one on."""

    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first} and {second}")


def square(x: int) -> int:
    return x * x


def add(x: int, y: int = 0, *, scale: int = 1) -> int:
    return (x + y) * scale


def slower_first(x: int) -> int:
    # The first inputs finish last: order of completion is not input order.
    time.sleep(max(0.0, 0.05 - x * 0.005))
    return x


def refuse_three(x: int) -> int:
    if x == 3:
        raise Refused(f"three is refused (x={x})")
    return x


def raise_two_arguments() -> None:
    raise TwoArguments("one", "two")


def exit_the_service() -> None:
    raise SystemExit(7)


def raise_flame_error() -> None:
    import flame

    raise flame.FlameError(flame.FlameErrorCode.NOT_FOUND, "nothing here")


def where_it_runs() -> bool:
    """True in the main thread."""
    return threading.current_thread() is threading.main_thread()


async def async_where_it_runs(delay: float) -> str:
    await anyio.sleep(delay)
    return sniffio.current_async_library()


def a_generator() -> Iterator[int]:
    yield 1


def maybe_a_lock(lock: bool) -> Any:
    return {"ok": 1, "lock": threading.Lock()} if lock else {"ok": 1}


def echo(data: Any) -> Any:
    return data


def die_on_two(x: int) -> int:
    if x == 2:
        import os

        os._exit(3)
    return x


def sleep_then_echo(x: float) -> float:
    time.sleep(x)
    return x
