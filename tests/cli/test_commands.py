"""The ``flame`` cluster commands run as a user runs them: processes, against real servers.

Each command runs as ``python -m flame ...`` against the embedded cluster and
the servers that answer as Flame v0.4 and v0.6 do; tables and ``--json``;
each error path gives its documented exit status and one line on stderr.
The home directory of each process is empty, so that no file of the machine
chooses the cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from v04_server import serve_v04
from v06_server import serve_v06

import flame
from flame.local import LocalCluster

APPLICATIONS = """\
name: cluster-keys-are-left-alone
endpoint: http://127.0.0.1:9
policy: priority
applications:
  - name: ping
    shim: Log
  - name: sh
    shim: Shell
    environments: [GREETING=hi]
"""


@pytest.fixture
def home(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a ``flame`` process: an empty home, no FLAME_* variable."""
    (tmp_path / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    env["HOME"] = str(tmp_path / "home")
    env["COLUMNS"] = "80"
    yield env


class Done:
    """A finished ``flame`` process."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def json(self) -> Any:
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout)

    def error_line(self) -> str:
        """The one line on stderr, and nothing on stdout."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self.stderr
        assert "Traceback" not in self.stderr
        return lines[0]


async def flame_cli(*argv: str, env: Mapping[str, str]) -> Done:
    done = await anyio.run_process(
        [sys.executable, "-m", "flame", *argv], check=False, env=dict(env)
    )
    return Done(done.returncode, done.stdout.decode(), done.stderr.decode())


def run_cli(*argv: str, env: Mapping[str, str]) -> Done:
    done = subprocess.run(
        [sys.executable, "-m", "flame", *argv], capture_output=True, text=True, env=env, timeout=60
    )
    return Done(done.returncode, done.stdout, done.stderr)


def utc(text: str) -> datetime:
    """An ISO-8601 time of the JSON output, checked to be in UTC."""
    time = datetime.fromisoformat(text)
    assert time.utcoffset() is not None and time.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    return time


# Slow: some forty processes. The quicker tests below run every command's
# code on every session's Python and dependencies.
@pytest.mark.slow
async def test_each_command_on_the_embedded_cluster(
    tmp_path: Path, home: dict[str, str], anyio_backend: str
) -> None:
    conf = tmp_path / "apps.yaml"
    conf.write_text(APPLICATIONS)
    gate = tmp_path / "gate"
    async with LocalCluster(slots=2) as cluster, await flame.connect(cluster.endpoint) as conn:
        at = ("--endpoint", cluster.endpoint)

        done = await flame_cli("register", str(conf), *at, env=home)
        assert (done.returncode, done.stdout) == (0, "registered ping\nregistered sh\n")
        (sh,) = [a for a in await conn.list_applications() if a.name == "sh"]
        assert sh.shim is flame.Shim.SHELL and sh.environments == ["GREETING=hi"]

        # No --endpoint: FLAME_ENDPOINT says where, as flame.connect reads it.
        apps = (await flame_cli("list", "applications", "--json", env=_at(home, cluster))).json()
        assert [(a["name"], a["shim"], a["state"]) for a in apps] == [
            ("ping", "LOG", "ENABLED"),
            ("sh", "SHELL", "ENABLED"),
        ]
        utc(apps[0]["creation_time"])

        session = await conn.create_session(flame.SessionAttributes("sh"))
        await session.run_task(b"echo $GREETING")
        await session.run_task(b"printf '\\377'; exit 3")
        held = await session.create_task(
            f"until [ -e {gate} ]; do sleep 0.02; done; echo late".encode()
        )

        # watch: the state now, then each change, until the final one.
        process = await anyio.open_process(
            [sys.executable, "-m", "flame", "watch", session.id, held.id, *at],
            env=home,
        )
        async with process:
            assert process.stdout is not None
            first = await _line(process.stdout)
            assert first.endswith(
                f"task {held.id} of session {session.id}: PENDING"
            ) or first.endswith(": RUNNING"), first
            gate.touch()
            rest = (await _rest(process.stdout)).splitlines()
            assert await process.wait() == 0
        assert rest[-1].endswith(": SUCCEED output: late"), rest
        states = [first.split(": ")[1]] + [line.split(": ")[1].split()[0] for line in rest]
        assert len(states) == len(set(states)), states

        table = await flame_cli("list", "sessions", *at, env=home)
        assert table.returncode == 0, table.stderr
        header, row = table.stdout.splitlines()
        assert header.split() == [
            "ID",
            "APPLICATION",
            "STATE",
            "PENDING",
            "RUNNING",
            "SUCCEED",
            "FAILED",
            "CANCELLED",
            "CREATED",
        ]
        assert row.split()[:8] == [session.id, "sh", "OPEN", "0", "0", "2", "1", "0"]

        tasks = (
            await flame_cli("list", "tasks", "--session", session.id, "--json", *at, env=home)
        ).json()
        assert [(t["id"], t["state"]) for t in tasks] == [
            ("1", "SUCCEED"),
            ("2", "FAILED"),
            ("3", "SUCCEED"),
        ]
        assert (tasks[0]["output"], tasks[0]["output_encoding"]) == ("hi\n", "utf-8")
        assert tasks[1]["input_encoding"] == "utf-8"
        utc(tasks[0]["completion_time"])
        table = await flame_cli("list", "tasks", "--session", session.id, *at, env=home)
        assert table.stdout.splitlines()[1].split()[:2] == ["1", "SUCCEED"]
        assert table.stdout.splitlines()[3].split()[-1] == "late"

        view = (await flame_cli("view", "session", session.id, "--json", *at, env=home)).json()
        assert (view["id"], view["state"], view["succeed"], view["failed"]) == (
            session.id,
            "OPEN",
            2,
            1,
        )
        assert view["completion_time"] is None
        table = await flame_cli("view", "task", session.id, "1", *at, env=home)
        fields = dict(line.split(None, 1) for line in table.stdout.splitlines())
        assert (fields["state"], fields["output"], fields["input"]) == (
            "SUCCEED",
            "hi",
            "echo $GREETING",
        )

        # An open session cannot be deleted (1); a closed one can, and is gone (3).
        done = await flame_cli("delete", session.id, *at, env=home)
        assert done.returncode == 1 and done.error_line().startswith("flame delete: ")
        closed = (await flame_cli("close", session.id, "--json", *at, env=home)).json()
        assert closed["state"] == "CLOSED" and utc(closed["completion_time"])
        assert (await conn.get_session(session.id)).state is flame.SessionState.CLOSED
        kept = await conn.create_session({"application": "sh"})
        await kept.close()
        deleted = (await flame_cli("delete", kept.id, "--json", *at, env=home)).json()
        assert (deleted["id"], deleted["state"]) == (kept.id, "CLOSED")
        with pytest.raises(flame.FlameError) as gone:
            await conn.get_session(kept.id)
        assert gone.value.code is flame.FlameErrorCode.NOT_FOUND
        done = await flame_cli("delete", kept.id, *at, env=home)
        assert done.returncode == 3

        done = await flame_cli("unregister", "ping", "--json", *at, env=home)
        assert done.json() == {"unregistered": "ping"}
        assert [a.name for a in await conn.list_applications()] == ["sh"]

        # Unknown ids are NOT_FOUND (3); a name in use is refused (1).
        done = await flame_cli("view", "task", session.id, "99", *at, env=home)
        assert done.returncode == 3 and done.stdout == ""
        assert done.error_line().startswith("flame view task: NOT_FOUND: ")
        done = await flame_cli("register", str(conf), "--json", *at, env=home)
        assert done.returncode == 1
        assert json.loads(done.stdout) == {"registered": ["ping"]}
        assert "ALREADY_EXISTS" in done.error_line() and "'sh'" in done.error_line()


def _at(env: Mapping[str, str], cluster: LocalCluster) -> dict[str, str]:
    return {**env, "FLAME_ENDPOINT": cluster.endpoint}


async def _line(stream: Any) -> str:
    seen = b""
    with anyio.fail_after(30):
        while b"\n" not in seen:
            seen += await stream.receive()
    line, _, rest = seen.partition(b"\n")
    assert not rest, seen
    return line.decode()


async def _rest(stream: Any) -> str:
    seen = b""
    with anyio.fail_after(30):
        try:
            while True:
                seen += await stream.receive()
        except anyio.EndOfStream:
            pass
    return seen.decode()


async def test_each_command_on_a_v04_cluster(
    tmp_path: Path, home: dict[str, str], anyio_backend: str
) -> None:
    conf = tmp_path / "apps.yaml"
    conf.write_text("name: ping\nshim: Log\n")  # one application's mapping
    async with serve_v04() as server, await flame.connect(server.endpoint) as conn:
        at = ("--endpoint", server.endpoint)
        done = await flame_cli("register", str(conf), "--json", *at, env=home)
        assert done.json() == {"registered": ["ping"]}
        apps = (await flame_cli("list", "applications", "--json", *at, env=home)).json()
        assert [(a["name"], a["shim"]) for a in apps] == [("ping", "LOG")]

        session = await conn.create_session(flame.SessionAttributes("ping"))
        await session.run_task(b"one")
        await session.run_task(b"fail:boom")
        held = await session.create_task(b"hold")

        # v0.4 has no ListTask: the tasks are read by id, 1 to the session's count.
        tasks = (
            await flame_cli("list", "tasks", "--session", session.id, "--json", *at, env=home)
        ).json()
        assert [(t["id"], t["state"], t["output"]) for t in tasks] == [
            ("1", "SUCCEED", "one"),
            ("2", "FAILED", "boom"),
            ("3", "RUNNING", None),
        ]

        process = await anyio.open_process(
            [sys.executable, "-m", "flame", "watch", session.id, held.id, "--json", *at],
            env=home,
        )
        async with process:
            assert process.stdout is not None
            first = json.loads(await _line(process.stdout))
            assert (first["id"], first["state"]) == (held.id, "RUNNING")
            await server.wait_for_watches(1)
            await server.release()
            rest = [json.loads(line) for line in (await _rest(process.stdout)).splitlines()]
            assert await process.wait() == 0
        assert [(t["state"], t["output"]) for t in rest] == [("SUCCEED", "hold")]

        view = (await flame_cli("view", "task", session.id, "2", "--json", *at, env=home)).json()
        assert (view["state"], view["output"], view["events"]) == ("FAILED", "boom", [])
        closed = (await flame_cli("close", session.id, "--json", *at, env=home)).json()
        assert (closed["state"], closed["succeed"], closed["failed"]) == ("CLOSED", 2, 1)

        # What v0.4 lacks is UNIMPLEMENTED (5); an unknown id NOT_FOUND (3); an id
        # v0.4 cannot read, INVALID_ARGUMENT: a usage error (2).
        done = await flame_cli("unregister", "ping", *at, env=home)
        assert done.returncode == 5, done.stderr
        assert "UNIMPLEMENTED" in done.error_line() and "v0.4" in done.error_line()
        done = await flame_cli("view", "session", "99", *at, env=home)
        assert done.returncode == 3 and "NOT_FOUND" in done.error_line()
        done = await flame_cli("list", "tasks", "--session", "x1", *at, env=home)
        assert done.returncode == 2 and "INVALID_ARGUMENT" in done.error_line()


async def test_commands_on_a_v06_cluster_chosen_by_context(
    tmp_path: Path, home: dict[str, str], anyio_backend: str
) -> None:
    conf = tmp_path / "apps.yaml"
    conf.write_text("applications:\n  - name: svc\n    shim: Host\n    command: /bin/true\n")
    async with serve_v06() as server, await flame.connect(server.endpoint) as conn:
        flame_dir = Path(home["HOME"]) / ".flame"
        flame_dir.mkdir()
        (flame_dir / "flame.yaml").write_text(
            "current-context: down\n"
            "contexts:\n"
            "  - name: down\n"
            "    cluster: {endpoint: 'http://127.0.0.1:1'}\n"
            "  - name: v06\n"
            f"    cluster: {{endpoint: '{server.endpoint}', wire: v0.6}}\n"
        )
        done = await flame_cli("register", str(conf), "--context", "v06", env=home)
        assert (done.returncode, done.stdout) == (0, "registered svc\n"), done.stderr
        (svc,) = [a for a in await conn.list_applications() if a.name == "svc"]
        assert svc.shim is flame.Shim.HOST and svc.command == "/bin/true"

        session = await conn.create_session(flame.SessionAttributes("svc"), session_id="s-1")
        for data in (b"one", b"two", b"fail:boom"):
            await session.run_task(data)
        # ListTask, whose order the server shuffles: shown in the order of the ids.
        tasks = (
            await flame_cli(
                "list", "tasks", "--session", "s-1", "--json", "--context", "v06", env=home
            )
        ).json()
        assert [(t["id"], t["state"]) for t in tasks] == [
            ("1", "SUCCEED"),
            ("2", "SUCCEED"),
            ("3", "FAILED"),
        ]
        view = (
            await flame_cli(
                "view",
                "task",
                "s-1",
                "3",
                "--json",
                "--wire",
                "v0.6",
                "--endpoint",
                server.endpoint,
                env=home,
            )
        ).json()
        assert [e["code"] for e in view["events"]] == [0, 1, 3]
        assert view["events"][-1]["message"] == "boom" and utc(view["events"][0]["creation_time"])

        # The current context is down: nothing answers there (4).
        done = await flame_cli("list", "sessions", env=home)
        assert done.returncode == 4 and "UNAVAILABLE" in done.error_line()
        assert "127.0.0.1:1" in done.error_line()


def test_bad_input_and_an_unreachable_cluster_say_what_to_do(
    tmp_path: Path, home: dict[str, str]
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{sock.getsockname()[1]}"
    done = run_cli("view", "session", "1", "--endpoint", nobody, env=home)
    assert done.returncode == 4 and done.stdout == ""
    assert done.error_line().startswith(
        f"flame view session: UNAVAILABLE: cannot connect to {nobody}"
    )

    # Usage errors (2): one line naming the command, and where its help is.
    done = run_cli("list", "tasks", "--endpoint", nobody, env=home)
    assert done.returncode == 2
    assert done.error_line() == (
        "flame list tasks: Missing option '--session'. (see 'flame list tasks --help')"
    )
    done = run_cli("view", "task", "1", env=home)
    assert done.returncode == 2 and "Missing argument 'TASK'" in done.error_line()
    done = run_cli("list", "nodes", env=home)
    assert done.returncode == 2 and "No such command 'nodes'" in done.error_line()
    done = run_cli("list", "sessions", "--endpoint", nobody, "--context", "x", env=home)
    assert done.returncode == 2 and "give the address alone" in done.error_line()
    done = run_cli("list", "sessions", "--endpoint", nobody, "--wire", "v0.9", env=home)
    assert done.returncode == 2 and "v0.9" in done.error_line()
    done = run_cli("list", env=home)
    assert done.returncode == 2 and "applications" in done.stdout

    # A FILE that cannot be registered is refused (2) before any call is made.
    bad = tmp_path / "bad.yaml"
    for text, said in [
        (None, "cannot read it"),
        ("applications: [", "not valid YAML"),
        ("endpoint: http://x:1\n", "holds no `applications` list"),
        ("applications:\n  - name: w\n    shim: Wsam\n", "unknown shim 'Wsam'"),
        ("applications:\n  - {name: a, shim: Log, colour: red}\n", "unknown key(s) colour"),
    ]:
        if text is not None:
            bad.write_text(text)
        done = run_cli("register", str(bad), "--endpoint", nobody, env=home)
        assert done.returncode == 2, (text, done.stderr)
        line = done.error_line()
        assert line.startswith(f"flame register: INVALID_CONFIG: {bad}") and said in line, line
