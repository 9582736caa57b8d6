"""``flame local`` as a user runs it: a separate process, stopped by a signal."""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.abc
import psutil

from flame._proto.v04 import flame as pb
from flame._transport import Channel

from .conftest import Client, wait_until


def _flame_local() -> list[str]:
    """The command line of ``flame local`` with this interpreter."""
    if importlib.util.find_spec("flame._demo") is not None:
        return [
            sys.executable,
            "-c",
            "import sys; from flame._cli import main; sys.exit(main())",
            "local",
        ]
    return [sys.executable, "-m", "flame.local"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_config(path: Path, port: int) -> None:
    path.write_text(
        f"""
name: test
endpoint: http://127.0.0.1:{port}
storage: mem
applications:
  - name: ping
    shim: Log
  - name: sh
    shim: Shell
    environments:
      - GREETING=hi
"""
    )


async def _first_line(process: anyio.abc.Process) -> str:
    assert process.stdout is not None
    seen = b""
    with anyio.fail_after(30):
        async for chunk in process.stdout:
            seen += chunk
            if b"\n" in seen:
                break
    return seen.split(b"\n", 1)[0].decode()


async def test_flame_local_serves_and_stops_on_sigterm_leaving_no_child(tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "flame-conf.yaml"
    _write_config(config, port)
    process = await anyio.open_process(
        [*_flame_local(), "--config", str(config), "--slots", "2", "--log-level", "debug"],
        stderr=subprocess.DEVNULL,
    )
    try:
        line = await _first_line(process)
        assert line == f"flame local: serving on http://127.0.0.1:{port}"
        async with await Channel.connect(f"http://127.0.0.1:{port}") as channel:
            client = Client(channel)
            listed = await client.call("list_application", pb.ListApplicationRequest())
            assert sorted(a.metadata.name for a in listed.applications) == ["ping", "sh"]
            session_id = await client.session("ping")
            for _ in range(3):
                assert (await client.run(session_id)).status.state == pb.TaskState.Succeed
            assert await client.counters(session_id) == (0, 0, 3, 0)
            await client.call("close_session", pb.CloseSessionRequest(session_id=session_id))

            shell = await client.session("sh")
            assert (await client.run(shell, b"echo $GREETING")).spec.output == b"hi\n"
            # Leave a task running, with a child of its own, when the signal comes.
            await client.task(shell, b"sleep 60 & wait")
            cluster = psutil.Process(process.pid)

            def grandchildren() -> list[psutil.Process]:
                return [p for p in cluster.children(recursive=True) if p.name() == "sleep"]

            await wait_until(lambda: len(grandchildren()) == 1)
            descendants = cluster.children(recursive=True)

        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            code = await process.wait()
        assert code == 0
        for child in descendants:
            await wait_until(lambda child=child: not _alive(child))
    finally:
        if process.returncode is None:
            process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()
        await process.aclose()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_flame_local_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "flame-conf.yaml"
    config.write_text("applications:\n  - name: w\n    shim: Wasm\n    command: w.wasm\n")
    port = _free_port()
    done = subprocess.run(
        [*_flame_local(), "--config", str(config), "--endpoint", f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Wasm" in done.stderr and "cannot run" in done.stderr

    config.write_text("colour: blue\n")
    done = subprocess.run(
        [*_flame_local(), "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "unknown key(s) colour" in done.stderr


def test_flame_local_says_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*_flame_local(), "--endpoint", f"http://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr


async def test_flame_local_speaks_the_wire_it_is_told_and_that_one_only(tmp_path: Path) -> None:
    from flame._errors import FlameError
    from flame._proto.v06.flame import v1

    port = _free_port()
    config = tmp_path / "flame-conf.yaml"
    # The file says v0.6 (and lists a Host application); the option could say otherwise.
    config.write_text(
        f"endpoint: http://127.0.0.1:{port}\nwire: v0.6\n"
        "applications: [{name: svc, shim: Host, command: /bin/true}]\n"
    )
    process = await anyio.open_process(
        [*_flame_local(), "--config", str(config), "--slots", "1"], stderr=subprocess.DEVNULL
    )
    try:
        await _first_line(process)
        async with await Channel.connect(f"http://127.0.0.1:{port}") as channel:
            listed = await channel.unary(
                v1.FrontendStub(channel).list_application, v1.ListApplicationRequest()
            )
            assert [app.metadata.name for app in listed.applications] == ["svc"]
            # The probe of the wire's page tells it apart: v0.4's Frontend is not there.
            try:
                await channel.unary(
                    pb.FrontendStub(channel).list_application, pb.ListApplicationRequest()
                )
            except FlameError as error:
                assert "UNIMPLEMENTED" in error.message
            else:
                raise AssertionError("a v0.6 cluster answered v0.4's ListApplication")
    finally:
        process.terminate()
        with anyio.fail_after(30):
            await process.wait()
        await process.aclose()
    # --wire wins over the file: on v0.4 its Host application cannot be.
    result = await anyio.run_process(
        [*_flame_local(), "--config", str(config), "--wire", "v0.4"], check=False
    )
    assert result.returncode == 1
    said = result.stderr.decode()
    assert "cannot register, on v0.4" in said and "'svc' uses the Host shim" in said
