"""Shared test setup: every async test runs under each backend, asyncio and trio at least.

anyio's plugin runs in auto mode (pyproject.toml), so every ``async def``
test takes the ``anyio_backend`` fixture at collection time, parametrized
tests included, and none can run on one backend only by forgetting a marker.

``--backends`` picks the backends (default ``asyncio,trio``); ``uvloop`` is
asyncio on uvloop's event loop: ``pytest --backends=asyncio,uvloop,trio``
runs the whole matrix, as one of the nox sessions does.

Under ``uvloop`` the fixture's value is still the string ``"asyncio"``, so
that tests may compare ``anyio_backend == "asyncio"`` and pass it to
subprocesses as a name. anyio's ``("asyncio", {"use_uvloop": True})`` form
would carry the option, but not through those comparisons; instead the
fixture installs uvloop's event loop policy for the length of the test, and
anyio's test runner, given no loop factory, makes its loop through the policy.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator

import pytest

BACKENDS = ("asyncio", "uvloop", "trio")
DEFAULT_BACKENDS = "asyncio,trio"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backends",
        default=DEFAULT_BACKENDS,
        help=f"comma-separated backends for async tests, among {','.join(BACKENDS)} "
        f"(default: {DEFAULT_BACKENDS})",
    )


_CHOSEN = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_CHOSEN] = _backends(config)


def _backends(config: pytest.Config) -> list[str]:
    names = [name.strip() for name in str(config.getoption("backends")).split(",")]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise pytest.UsageError(
            f"--backends={config.getoption('backends')}: choose among {', '.join(BACKENDS)}"
        )
    if "uvloop" in names and importlib.util.find_spec("uvloop") is None:
        raise pytest.UsageError(
            "--backends names uvloop, which is not installed: pip install uvloop"
        )
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "anyio_backend" in metafunc.fixturenames:
        names = metafunc.config.stash[_CHOSEN]
        metafunc.parametrize("anyio_backend", names, ids=names, indirect=True)


# Tests whose expectations do not hold in one corner of the matrix, for a
# reason outside the code under test: (test, where, why). Strict: a test that
# passes there fails, so that its mark goes once it is fixed.
_LIBUV_FD = (
    "libuv keeps a /dev/null descriptor per loop, opened at its first listen, "
    "and the census counts it as a leak"
)
KNOWN_FAILURES = [
    (
        "tests/transport/test_resources.py::test_a_full_cycle_leaves_nothing_behind",
        "uvloop",
        _LIBUV_FD,
    ),
    ("tests/transport/test_resources.py::test_many_cycles_do_not_accumulate", "uvloop", _LIBUV_FD),
]


def _where(item: pytest.Item) -> set[str]:
    callspec = getattr(item, "callspec", None)
    backend = callspec.params.get("anyio_backend") if callspec is not None else None
    return {str(backend)}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    known = {(test, where): why for test, where, why in KNOWN_FAILURES}
    for item in items:
        test = item.nodeid.split("[")[0]
        for where in _where(item):
            why = known.get((test, where))
            if why is not None:
                item.add_marker(pytest.mark.xfail(reason=why, strict=True))


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    name = str(request.param)
    if name != "uvloop":
        yield name
        return
    import uvloop

    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield "asyncio"
    finally:
        asyncio.set_event_loop_policy(previous)


@pytest.fixture
def plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich's environment as on a developer's terminal, whatever this process was given.

    A terminal that is not a dumb one, and none of the variables by which
    rich is told to draw on anything (FORCE_COLOR, TTY_COMPATIBLE) or on
    nothing (TTY_INTERACTIVE=0): progress tests then see rich's own choice.
    """
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
