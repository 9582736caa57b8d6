"""The machinery under the blocking API, on its own: the portal, the caller, the iterators.

No cluster here: coroutines and async generators of the test's own stand in
for the async API, so that what the layer promises (its thread, its
closing, who runs what, an async iterator left when dropped) is checked
apart from any call.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.lowlevel
import pytest

from flame import FlameError, FlameErrorCode
from flame.sync._caller import Caller
from flame.sync._iterators import BlockingIterator
from flame.sync._portal import Portal

from .conftest import thread_count, wait_until


@pytest.fixture
def portal(backend: str) -> Iterator[Portal]:
    running = Portal(backend)
    running.closed_message = "the test's portal is closed"
    yield running
    running.close()


class _Numbers:
    """An async generator of 0, 1, 2, ... that records whether it was closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.made = 0

    async def numbers(self) -> AsyncIterator[int]:
        try:
            while True:
                await anyio.lowlevel.checkpoint()
                yield self.made
                self.made += 1
        finally:
            self.closed.set()


def test_a_call_runs_on_the_portals_thread(portal: Portal) -> None:
    async def where() -> str:
        await anyio.lowlevel.checkpoint()
        return threading.current_thread().name

    assert portal.call(where) == portal.thread.name != threading.current_thread().name


def test_closing_fails_what_is_left_and_ends_the_thread(backend: str) -> None:
    before = thread_count()
    portal = Portal(backend)
    portal.closed_message = "closed for the test"
    outcome: list[BaseException] = []
    started = threading.Event()

    async def for_ever() -> None:
        started.set()
        await anyio.sleep_forever()

    def wait_for_ever() -> None:
        try:
            portal.call(for_ever)
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait_for_ever)
    waiter.start()
    wait_until(started.is_set, "the call to start")
    portal.close()
    waiter.join()
    assert thread_count() == before
    (error,) = outcome
    assert isinstance(error, FlameError) and error.code is FlameErrorCode.INVALID_STATE
    assert error.message == "closed for the test"
    with pytest.raises(FlameError) as caught:
        portal.call(anyio.sleep_forever)
    assert caught.value.message == "closed for the test"


def test_user_code_runs_in_the_calling_thread(portal: Portal) -> None:
    caller = Caller(portal)
    seen: list[int] = []

    def here(value: int) -> int:
        seen.append(threading.get_ident())
        return value * 2

    async def ask() -> list[int]:
        return [await caller.run_here(here, n) for n in range(3)]

    assert portal.call(ask, caller) == [0, 2, 4]
    assert seen == [threading.get_ident()] * 3


def test_a_plain_async_iterator_is_closed_when_the_blocking_one_is_dropped(
    portal: Portal,
) -> None:
    source = _Numbers()
    for number in BlockingIterator(portal, source.numbers(), None):
        if number == 2:
            break
    # Nothing closed it by hand: dropping it did, on the portal's loop.
    assert source.closed.wait(20)
    assert source.made == 2


def test_a_plain_async_iterator_is_closed_by_close_and_with(portal: Portal) -> None:
    source = _Numbers()
    numbers = BlockingIterator(portal, source.numbers(), None)
    assert next(numbers) == 0
    numbers.close()
    assert source.closed.is_set()  # close() waits
    assert list(numbers) == []
    source = _Numbers()
    with BlockingIterator(portal, source.numbers(), None) as numbers:
        assert [next(numbers), next(numbers)] == [0, 1]
    assert source.closed.is_set()


def test_a_dropped_iterator_never_started_starts_nothing(portal: Portal) -> None:
    source = _Numbers()
    numbers = source.numbers()
    BlockingIterator(portal, numbers, None)
    gc.collect()
    assert source.made == 0 and not source.closed.is_set()
