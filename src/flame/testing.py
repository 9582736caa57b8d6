"""A pytest plugin: a Flame cluster and a connection to it, as fixtures.

Installing flame-sdk registers this module with pytest (the ``pytest11``
entry point ``flame``); nothing needs to be imported. A test asks for a
connection, and a cluster is there::

    async def test_echo(flame_connection: flame.Connection) -> None:
        await flame_connection.register_application("echo", {"shim": flame.Shim.SHELL})
        attrs = flame.SessionAttributes(application="echo")
        async with await flame_connection.create_session(attrs) as session:
            task = await session.run_task(b"echo hi")
        assert task.output == b"hi\\n"

The fixtures:

- ``flame_cluster``: a running :class:`~flame.local.LocalCluster`, started
  for each test (it starts in milliseconds) and stopped after it with every
  process it started; the ``flame_cluster_scope`` ini option shares one among
  the tests of a module, a package or the whole session instead. It runs on
  an asyncio loop of its own, in a thread, and is reached over TCP like any
  cluster: it serves tests of every backend, and can outlive a test's event
  loop.
- ``flame_cluster_config``: the :class:`~flame.local.ClusterConfig` it starts
  with; override it in your top-level ``conftest.py``.
- ``flame_endpoint``: the URL the tests talk to.
- ``flame_connection``: a :class:`~flame.Connection` to ``flame_endpoint``,
  opened for one test on that test's event loop (anyio's plugin runs it on
  the backend ``anyio_backend`` chooses) and closed after it.

``pytest --flame-endpoint URL``, or the environment variable
``FLAME_TEST_ENDPOINT``, points ``flame_endpoint`` and ``flame_connection``
at a real cluster: no embedded cluster is started, and a test that asks for
``flame_cluster`` is skipped. ``FLAME_ENDPOINT``, which :func:`flame.connect`
reads, is not used here, so that a test run never reaches the cluster of
your shell by accident.

Importing this module starts nothing and configures nothing: the cluster's
code is imported when a fixture first needs it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Literal

import pytest

if TYPE_CHECKING:
    from flame import Connection
    from flame.local import ClusterConfig, LocalCluster

__all__ = [
    "ENDPOINT_VARIABLE",
    "flame_cluster",
    "flame_cluster_config",
    "flame_connection",
    "flame_endpoint",
]

ENDPOINT_VARIABLE = "FLAME_TEST_ENDPOINT"
"""The environment variable that does what ``--flame-endpoint`` does."""

_Scope = Literal["session", "package", "module", "class", "function"]
_SCOPES: tuple[_Scope, ...] = ("session", "package", "module", "class", "function")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flame", "Flame SDK fixtures")
    group.addoption(
        "--flame-endpoint",
        dest="flame_endpoint",
        metavar="URL",
        default=None,
        help="run the flame fixtures against the Flame cluster at URL instead of an "
        f"embedded one (or set {ENDPOINT_VARIABLE})",
    )
    parser.addini(
        "flame_cluster_scope",
        default="function",
        help="which tests share an embedded cluster of the flame_cluster fixture: "
        f"{', '.join(_SCOPES)} (default: function, a cluster per test)",
    )


def pytest_configure(config: pytest.Config) -> None:
    _cluster_scope("flame_cluster", config)  # a bad value is refused before any test runs


def _cluster_scope(fixture_name: str, config: pytest.Config) -> _Scope:
    scope = str(config.getini("flame_cluster_scope")).strip() or "function"
    for known in _SCOPES:
        if scope == known:
            return known
    raise pytest.UsageError(f"flame_cluster_scope = {scope!r}: use one of {', '.join(_SCOPES)}")


def _given_endpoint(config: pytest.Config) -> str | None:
    """The real cluster named by ``--flame-endpoint`` or the environment, if any."""
    given = config.getoption("flame_endpoint", default=None)
    if given is None:
        given = os.environ.get(ENDPOINT_VARIABLE)
    given = (given or "").strip()
    return given or None


@pytest.fixture(scope="session")
def flame_cluster_config() -> ClusterConfig:
    """The configuration of the embedded cluster: override it to change it.

    In your top-level ``conftest.py``::

        @pytest.fixture(scope="session")
        def flame_cluster_config() -> ClusterConfig:
            return ClusterConfig(slots=4, applications=[ApplicationConfig("ping")])

    It is session-scoped: override it once, at the top, where every test
    sees it.
    """
    from flame.local import ClusterConfig

    return ClusterConfig()


@pytest.fixture(scope=_cluster_scope)
def flame_cluster(
    request: pytest.FixtureRequest, flame_cluster_config: ClusterConfig
) -> Iterator[LocalCluster]:
    """An embedded cluster, running on its own thread (skips with ``--flame-endpoint``)."""
    given = _given_endpoint(request.config)
    if given is not None:
        pytest.skip(
            f"the flame fixtures use the cluster at {given} (--flame-endpoint or "
            f"{ENDPOINT_VARIABLE}); this test needs the embedded one"
        )
    from anyio.from_thread import start_blocking_portal

    from flame.local import LocalCluster

    cluster = LocalCluster(flame_cluster_config)
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(cluster),
    ):
        yield cluster


@pytest.fixture(scope=_cluster_scope)
def flame_endpoint(request: pytest.FixtureRequest) -> str:
    """The URL of the cluster under test: ``--flame-endpoint``, else the embedded one's."""
    given = _given_endpoint(request.config)
    if given is not None:
        return given
    cluster: LocalCluster = request.getfixturevalue("flame_cluster")
    return cluster.endpoint


@pytest.fixture
async def flame_connection(flame_endpoint: str, anyio_backend: Any) -> AsyncIterator[Connection]:
    """A connection to ``flame_endpoint`` for one test, on that test's backend."""
    from flame import connect

    async with await connect(flame_endpoint) as connection:
        yield connection
