"""Function sessions through the blocking API: calls, map, starmap, as_completed, errors.

The service is the real one (``python -m flame.functions``), started by the
embedded cluster's Grpc shim; the functions are closures of the tests, so
they travel by value.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import flame
import flame.sync
from flame.local import LocalCluster
from flame.sync._functions import FunctionResults


def test_calls_maps_and_results(cluster: LocalCluster, backend: str) -> None:
    offset = 10
    read_by: set[int] = set()

    def add(x: int, y: int = 0) -> int:
        return x + y + offset

    def numbers() -> Iterator[int]:
        for n in range(5):
            read_by.add(threading.get_ident())
            yield n

    with (
        flame.sync.connect(cluster.endpoint, backend=backend) as conn,
        conn.function_session(add, slots=1) as f,
    ):
        assert "FunctionSession of" in repr(f) and f.function.endswith("add")
        assert isinstance(f.session, flame.sync.Session)
        assert f(1) == 11 and f(1, y=2) == 13
        assert f.map([1, 2, 3]) == [11, 12, 13]
        assert f.map(numbers(), concurrency=2) == [10, 11, 12, 13, 14]
        assert read_by == {threading.get_ident()}  # the generator ran in this thread
        assert f.starmap([(1, 2), (3, 4)]) == [13, 17]
        with f.as_completed(range(5), concurrency=2) as results:
            assert isinstance(results, FunctionResults)
            got = dict(results)
            assert results.taken == 5
        assert got == {n: n + 10 for n in range(5)}
        session_id = f.session.id
    with flame.sync.connect(cluster.endpoint) as conn:
        assert conn.get_session(session_id).state is flame.SessionState.CLOSED


def test_what_the_function_raises_is_raised_here(cluster: LocalCluster, backend: str) -> None:
    def check(x: int) -> int:
        if x == 2:
            raise LookupError(f"no {x}")
        return x

    with flame.sync.connect(cluster.endpoint, backend=backend) as conn:
        with conn.function_session(check) as f:
            with pytest.raises(LookupError, match="no 2"):
                f(2)
            with pytest.raises(LookupError, match="no 2"):
                f.map([1, 2, 3], concurrency=1)
            assert f.map([1, 3]) == [1, 3]  # the session goes on
        with pytest.raises(flame.FlameError) as caught:
            conn.function_session(threading.Lock())  # type: ignore[call-overload]
        assert caught.value.code is flame.FlameErrorCode.INVALID_ARGUMENT
