"""flame.testing, the pytest plugin: its fixtures, run by pytest's own pytester.

Each test writes a small test suite of a user's, runs pytest on it (in this
process unless said otherwise), and reads the outcome.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

import flame
from flame.local import LocalCluster
from flame.testing import ENDPOINT_VARIABLE

pytest_plugins = ["pytester"]

BOTH_BACKENDS = """
    import pytest

    pytestmark = pytest.mark.anyio


    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(request):
        return request.param
"""

# A user's test: register an application, open a session, run a task.
RUN_A_TASK = """
    import flame


    async def test_runs_a_task(flame_connection, anyio_backend):
        name = f"echo-{anyio_backend}"
        await flame_connection.register_application(name, {"shim": flame.Shim.SHELL})
        attrs = flame.SessionAttributes(application=name, slots=1)
        async with await flame_connection.create_session(attrs) as session:
            task = await session.run_task(f"echo hello from {anyio_backend}".encode())
        assert task.state is flame.TaskState.SUCCEED
        assert task.output == f"hello from {anyio_backend}\\n".encode()
"""


def suite(*parts: str) -> str:
    return "\n".join(textwrap.dedent(part) for part in parts)


@pytest.fixture
def outside_cluster() -> Iterator[tuple[LocalCluster, BlockingPortal]]:
    """A cluster that the pytest run under test does not start: a "real" one."""
    cluster = LocalCluster(slots=2)
    with start_blocking_portal("asyncio") as portal, portal.wrap_async_context_manager(cluster):
        yield cluster, portal


async def _application_names(endpoint: str) -> set[str]:
    async with await flame.connect(endpoint) as connection:
        return {app.name for app in await connection.list_applications()}


def test_fixtures_run_a_task_under_asyncio_and_trio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user=suite(
            BOTH_BACKENDS,
            RUN_A_TASK,
            """
            import sniffio
            from flame.local import LocalCluster


            async def test_the_connection_runs_on_the_tests_backend(
                flame_connection, anyio_backend
            ):
                assert sniffio.current_async_library() == anyio_backend
                assert await flame_connection.list_sessions() is not None


            def test_the_cluster_is_embedded(flame_cluster, flame_endpoint):
                assert isinstance(flame_cluster, LocalCluster)
                assert flame_endpoint == flame_cluster.endpoint
            """,
        )
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "*test_runs_a_task?asyncio? PASSED*",
            "*test_runs_a_task?trio? PASSED*",
        ]
    )


def test_a_backend_with_options_serves_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="""
            import asyncio

            import pytest

            import flame

            pytestmark = pytest.mark.anyio


            @pytest.fixture(params=[("asyncio", {"use_uvloop": True})], ids=["uvloop"])
            def anyio_backend(request):
                return request.param


            async def test_runs_a_task_on_uvloop(flame_connection):
                assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
                await flame_connection.register_application("echo", {"shim": flame.Shim.SHELL})
                attrs = flame.SessionAttributes(application="echo")
                async with await flame_connection.create_session(attrs) as session:
                    task = await session.run_task(b"echo on uvloop")
                assert task.output == b"on uvloop\\n"
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_the_scope_option_shares_one_cluster_among_all_tests(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nflame_cluster_scope = session\n")
    pytester.makepyfile(
        test_a=suite(
            BOTH_BACKENDS,
            """
            SEEN = []


            async def test_first(flame_connection, flame_endpoint):
                SEEN.append(flame_endpoint)


            async def test_second(flame_connection, flame_endpoint):
                SEEN.append(flame_endpoint)


            def test_all_saw_one_cluster():
                assert len(SEEN) == 4 and len(set(SEEN)) == 1, SEEN
            """,
        )
    )
    pytester.runpytest().assert_outcomes(passed=5)


def test_each_test_has_a_cluster_of_its_own(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_a="""
            SEEN = []

            def test_first(flame_endpoint):
                SEEN.append(flame_endpoint)

            def test_second(flame_endpoint):
                SEEN.append(flame_endpoint)

            def test_two_clusters():
                assert len(set(SEEN)) == 2, SEEN
        """
    )
    pytester.runpytest().assert_outcomes(passed=3)


def test_a_bad_scope_is_refused_before_any_test(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nflame_cluster_scope = forever\n")
    pytester.makepyfile(test_a="def test_nothing(): pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*flame_cluster_scope = 'forever': use one of session*"])


def test_the_config_fixture_registers_applications_at_start(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest
        from flame.local import ApplicationConfig, ClusterConfig


        @pytest.fixture(scope="session")
        def flame_cluster_config():
            return ClusterConfig(slots=3, applications=[ApplicationConfig("ping")])
        """
    )
    pytester.makepyfile(
        test_a=suite(
            """
            import pytest

            # anyio's own anyio_backend fixture: every backend installed (asyncio, trio).
            pytestmark = pytest.mark.anyio


            async def test_ping_is_there(flame_connection, flame_cluster):
                assert flame_cluster.config.slots == 3
                names = [app.name for app in await flame_connection.list_applications()]
                assert names == ["ping"]
            """
        )
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_flame_endpoint_points_the_fixtures_at_another_cluster(
    pytester: pytest.Pytester, outside_cluster: tuple[LocalCluster, BlockingPortal]
) -> None:
    cluster, portal = outside_cluster
    # No embedded cluster may even be configured in this run.
    pytester.makeconftest(
        """
        import pytest


        @pytest.fixture(scope="session")
        def flame_cluster_config():
            raise AssertionError("an embedded cluster was asked for")
        """
    )
    pytester.makepyfile(
        test_user=suite(
            BOTH_BACKENDS,
            RUN_A_TASK,
            f"""
            def test_the_endpoint_is_the_given_one(flame_endpoint):
                assert flame_endpoint == {cluster.endpoint!r}
            """,
        )
    )
    result = pytester.runpytest("--flame-endpoint", cluster.endpoint)
    result.assert_outcomes(passed=3)
    # The applications the run registered are on the outside cluster.
    names = portal.call(_application_names, cluster.endpoint)
    assert {"echo-asyncio", "echo-trio"} <= names


def test_the_environment_variable_does_the_same_and_skips_flame_cluster(
    pytester: pytest.Pytester,
    outside_cluster: tuple[LocalCluster, BlockingPortal],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster, portal = outside_cluster
    monkeypatch.setenv(ENDPOINT_VARIABLE, cluster.endpoint)
    pytester.makepyfile(
        test_user=suite(
            BOTH_BACKENDS,
            RUN_A_TASK,
            """
            def test_needs_the_embedded_cluster(flame_cluster):
                raise AssertionError("not reached: skipped")
            """,
        )
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines([f"*the flame fixtures use the cluster at {cluster.endpoint}*"])
    assert {"echo-asyncio", "echo-trio"} <= portal.call(_application_names, cluster.endpoint)


def test_a_suite_that_uses_no_fixture_starts_nothing(pytester: pytest.Pytester) -> None:
    # In a process of its own, so that what this process imported does not count.
    pytester.makepyfile(
        test_plain="""
            import sys
            import threading


            def test_nothing_of_flame_runs():
                assert threading.active_count() == 1, threading.enumerate()
                assert "flame.testing" in sys.modules
                # The embedded cluster is imported only when a fixture needs it.
                assert "flame.local" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "flame")
    result.assert_outcomes(passed=1)


def test_importing_flame_and_the_plugin_has_no_side_effects() -> None:
    probe = textwrap.dedent(
        """
        import asyncio, logging, sys, threading, warnings

        def state():
            return (
                threading.active_count(),
                list(logging.getLogger().handlers),
                logging.getLogger().level,
                list(logging.getLogger("flame").handlers),
                logging.getLogger("flame").level,
                type(asyncio.get_event_loop_policy()),
                sys.getswitchinterval(),
                list(warnings.filters),
            )

        before = state()
        import flame
        import flame.testing
        after = state()
        assert before == after, (before, after)
        print("unchanged")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "unchanged"


def test_the_readme_example_passes(pytester: pytest.Pytester) -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    section = readme.read_text(encoding="utf-8").split("## Testing code that uses the SDK")[1]
    (example,) = re.findall(r"```python\n(.*?)```", section.split("\n## ")[0], flags=re.DOTALL)
    pytester.makepyfile(test_readme=example)
    # anyio's own anyio_backend fixture: asyncio, and trio (installed here).
    pytester.runpytest().assert_outcomes(passed=2)
