"""``flame local`` at its edge, as a separate process, against hostile clients.

* A 1 GiB task input, sent by a raw HTTP/2 client that ignores every limit:
  refused from its length prefix, and the cluster's peak memory stays small.
* 1,000 idle TCP connections against a process that may open 512 files:
  real clients are still served.
* Idle connections are closed (GOAWAY first); a client whose connection
  was closed goes on, on a new one.
* A token in the config: calls without it are refused.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.events
import psutil
import pytest
from stall_proxy import stall_proxy

import flame
from flame import FlameError, FlameErrorCode, Shim, TaskState
from flame.local import ClusterConfig, LocalCluster

from .test_command import _first_line, _flame_local, _free_port

#: A hang guard, not a timing assertion.
BOUND = 120.0


@contextlib.asynccontextmanager
async def flame_local(
    *options: str, files: int | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, anyio.abc.Process]]:
    """``flame local`` on a free port, with at most ``files`` open files if given."""
    port = _free_port()
    command = [*_flame_local(), "--endpoint", f"http://127.0.0.1:{port}", "--slots", "2"]
    if files is not None:
        # The limit set in the process itself, which then becomes flame local.
        command = [
            sys.executable,
            "-c",
            "import os, resource, sys; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({files}, {files})); "
            "os.execv(sys.argv[1], sys.argv[1:])",
            *command,
        ]
    process = await anyio.open_process([*command, *options], env=env, stderr=None)
    try:
        await _first_line(process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.returncode is None:
            process.terminate()
            with anyio.move_on_after(30):
                await process.wait()
        if process.returncode is None:
            process.kill()
        await process.aclose()


def _peak_memory(pid: int) -> int:
    """The process's peak resident memory, in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _send_huge_create_task(port: int, length: int) -> tuple[str | None, str | None, int]:
    """Send a CreateTask whose message claims ``length`` bytes, as fast as the server lets.

    A raw HTTP/2 client that checks nothing: it sends the message's prefix
    and then zeros, as far as the flow-control windows allow, until the
    server ends the call or all of it is sent. Gives the grpc-status, the
    grpc-message and how many bytes went.
    """
    connection = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    connection.initiate_connection()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(60)
    sock.sendall(connection.data_to_send())
    stream_id = connection.get_next_available_stream_id()
    connection.send_headers(
        stream_id,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/flame.Frontend/CreateTask"),
            (":authority", f"127.0.0.1:{port}"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
    )
    prefix = struct.pack(">BI", 0, length)
    total = len(prefix) + length
    sent = 0
    zeros = bytes(1 << 16)
    status: str | None = None
    said: str | None = None
    ended = False
    try:
        while not ended:
            room = min(connection.local_flow_control_window(stream_id), total - sent)
            while room > 0 and not ended:
                size = min(room, connection.max_outbound_frame_size, len(zeros))
                piece = prefix + zeros[: size - len(prefix)] if sent == 0 else zeros[:size]
                connection.send_data(stream_id, piece, end_stream=sent + size == total)
                sent += size
                room -= size
                sock.sendall(connection.data_to_send())
                # Read whatever came meanwhile, without waiting.
                if select.select([sock], [], [], 0)[0]:
                    break
            if sent == total and status is not None:
                break
            data = sock.recv(1 << 16)
            if not data:
                break
            for event in connection.receive_data(data):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    headers = dict(event.headers)
                    status = headers.get("grpc-status", status)
                    said = headers.get("grpc-message", said)
                elif isinstance(event, (h2.events.StreamReset, h2.events.StreamEnded)):
                    ended = True
            sock.sendall(connection.data_to_send())
    except (OSError, h2.exceptions.ProtocolError):
        pass
    finally:
        sock.close()
    return status, said, sent


async def test_a_1_gib_input_is_refused_unread_and_memory_stays_bounded(
    anyio_backend: str,
) -> None:
    async with flame_local() as (endpoint, process):
        port = int(endpoint.rsplit(":", 1)[1])
        before = _peak_memory(process.pid)
        with anyio.fail_after(BOUND):
            status, said, sent = await anyio.to_thread.run_sync(
                _send_huge_create_task, port, 1 << 30
            )
        peak = _peak_memory(process.pid)
        # The cluster still serves.
        async with await flame.connect(endpoint) as conn:
            await conn.register_application("ping", {"shim": Shim.LOG})
            async with await conn.create_session({"application": "ping"}) as session:
                assert (await session.run_task(b"after")).state is TaskState.SUCCEED
    assert status == "8", (status, said)  # RESOURCE_EXHAUSTED
    assert said is not None and "1,073,741,824 bytes" in said
    # Refused from its first frames: far less than the gigabyte went.
    assert sent < 64 << 20
    # Generous: the cluster's own size varies, a gigabyte does not hide.
    assert peak - before < 200 << 20, (before, peak)


@pytest.mark.slow
async def test_a_thousand_idle_connections_leave_room_for_real_clients(
    anyio_backend: str,
) -> None:
    async with flame_local(files=512) as (endpoint, process):
        port = int(endpoint.rsplit(":", 1)[1])
        idle: list[socket.socket] = []
        try:
            for _ in range(1000):
                sock = socket.socket()
                sock.settimeout(30)
                sock.connect(("127.0.0.1", port))
                idle.append(sock)
            with anyio.fail_after(BOUND):
                conn = await flame.connect(endpoint, request_timeout=30)
                async with conn:
                    await conn.register_application("ping", {"shim": Shim.LOG})
                    async with await conn.create_session({"application": "ping"}) as session:
                        tasks = await session.run_tasks([b"%d" % i for i in range(20)])
            assert all(task.state is TaskState.SUCCEED for task in tasks)
            # Those told to go away have ended their side (FIN_WAIT) and go
            # within a second; the ones held are still established.
            held = sum(
                c.status == psutil.CONN_ESTABLISHED
                for c in psutil.Process(process.pid).net_connections(kind="tcp")
            )
        finally:
            for sock in idle:
                sock.close()
    # Half of the 512 files at most, and the real client's.
    assert held <= 256 + 1, held


async def test_idle_connections_are_told_to_go_away_and_clients_go_on(
    anyio_backend: str,
) -> None:
    config = ClusterConfig(slots=1, idle_timeout=0.3)
    async with LocalCluster(config) as cluster, stall_proxy(cluster.endpoint) as proxy:
        raw = socket.create_connection(("127.0.0.1", int(cluster.endpoint.rsplit(":", 1)[1])))
        try:
            raw.settimeout(BOUND)
            received = b""
            with anyio.fail_after(BOUND):
                while True:
                    data = await anyio.to_thread.run_sync(raw.recv, 1 << 16)
                    if not data:
                        break
                    received += data
        finally:
            raw.close()
        # SETTINGS, then a GOAWAY (type 7) saying why, then the end.
        assert b"idle for 0.3 s" in received
        async with await flame.connect(proxy.endpoint) as conn:
            await conn.list_sessions()
            await anyio.sleep(1.0)  # idle past the timeout: the cluster closes it
            await conn.list_sessions()
        assert proxy.connections == 2


async def test_flame_local_with_a_token_refuses_calls_without_it(
    anyio_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLAME_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "flame-conf.yaml"
    config.write_text("auth_token: 'local-t0ken'\n")
    async with flame_local("--config", str(config)) as (endpoint, _):
        # connect's first call (asking which wire the cluster speaks) is refused.
        with pytest.raises(FlameError) as raised:
            await flame.connect(endpoint)
        assert raised.value.code is FlameErrorCode.INVALID_CONFIG
        assert "requires a token" in raised.value.message
        async with await flame.connect(endpoint, auth_token="local-t0ken") as conn:
            assert await conn.list_sessions() == []
