"""The embedded cluster's own protections: TLS, the token's place, and the warning.

TLS end to end with the SDK's client, in process and with ``flame local``;
certificates that cannot be used stop the start with a clear error; serving
beyond loopback is warned about, in the log and on ``flame local``'s stderr.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import trustme

import flame
from flame import FlameError, FlameErrorCode, Shim, TaskState
from flame.local import ClusterConfig, LocalCluster, TlsConfig
from flame.local._security import exposure, is_loopback

from .test_command import _first_line, _flame_local, _free_port


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def certificate(authority: trustme.CA, tmp_path: Path) -> Iterator[TlsConfig]:
    server = authority.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    yield TlsConfig(cert_file=str(cert), key_file=str(key))


@pytest.fixture
def ca_file(authority: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return str(path)


async def _run_one_task(endpoint: str, ca_file: str) -> None:
    async with await flame.connect(endpoint, ca_file=ca_file) as conn:
        await conn.register_application("sh", {"shim": Shim.SHELL})
        async with await conn.create_session({"application": "sh"}) as session:
            task = await session.run_task(b"echo over tls")
            assert (task.state, task.output) == (TaskState.SUCCEED, b"over tls\n")


async def test_a_cluster_with_tls_serves_https_to_the_client(
    certificate: TlsConfig, ca_file: str
) -> None:
    async with LocalCluster(ClusterConfig(slots=1, tls=certificate)) as cluster:
        assert cluster.endpoint.startswith("https://127.0.0.1:")
        await _run_one_task(cluster.endpoint, ca_file)
        # A client that does not trust the certificate is refused.
        with pytest.raises(FlameError) as info:
            async with await flame.connect(cluster.endpoint) as conn:
                await conn.list_applications()
        assert "certificate is not trusted" in info.value.message, info.value


async def test_certificates_that_cannot_be_used_stop_the_start(
    certificate: TlsConfig, tmp_path: Path, authority: trustme.CA
) -> None:
    other_key = tmp_path / "other.key"
    authority.issue_cert("elsewhere").private_key_pem.write_to_path(str(other_key))
    cases = [
        (TlsConfig(str(tmp_path / "missing.pem"), certificate.key_file), "is not a file"),
        (TlsConfig(certificate.cert_file, str(other_key)), "the key is the certificate's"),
        (TlsConfig(certificate.key_file, certificate.key_file), "cannot use the certificate"),
    ]
    for tls, words in cases:
        with pytest.raises(FlameError) as info:
            async with LocalCluster(ClusterConfig(slots=1, tls=tls)):
                pass
        assert info.value.code is FlameErrorCode.INVALID_CONFIG
        assert words in info.value.message, info.value.message


async def test_flame_local_serves_https_with_tls_options(
    certificate: TlsConfig, ca_file: str
) -> None:
    port = _free_port()
    command = [
        *_flame_local(),
        "--endpoint",
        f"http://127.0.0.1:{port}",
        "--slots",
        "1",
        "--tls-cert",
        certificate.cert_file,
        "--tls-key",
        certificate.key_file,
    ]
    process = await anyio.open_process(command, stderr=subprocess.DEVNULL)
    try:
        line = await _first_line(process)
        assert line == f"flame local: serving on https://127.0.0.1:{port}", line
        await _run_one_task(f"https://127.0.0.1:{port}", ca_file)
    finally:
        process.terminate()
        with anyio.fail_after(30):
            await process.wait()
        await process.aclose()


def test_flame_local_wants_both_tls_options(certificate: TlsConfig) -> None:
    done = subprocess.run(
        [*_flame_local(), "--tls-cert", certificate.cert_file],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "give --tls-cert and --tls-key together" in done.stderr


# --------------------------------------------------------------------------
# Serving beyond loopback


def test_what_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::")
    assert not is_loopback("192.0.2.7")


def test_the_warning_says_what_is_missing(certificate: TlsConfig) -> None:
    assert exposure(ClusterConfig(endpoint="http://127.0.0.1:8080")) is None
    bare = exposure(ClusterConfig(endpoint="http://0.0.0.0:8080"))
    assert bare is not None
    assert "0.0.0.0:8080, beyond this machine" in bare
    assert "without TLS" in bare and "without a token" in bare
    assert "run commands as this user" in bare
    # With a token but no TLS, the token itself crosses the network in clear.
    token_only = exposure(ClusterConfig(endpoint="http://0.0.0.0:8080", auth_token="t0ken"))
    assert token_only is not None
    assert "without a token" not in token_only
    assert "without TLS" in token_only and "the token itself" in token_only
    tls_only = exposure(ClusterConfig(endpoint="https://0.0.0.0:8443", tls=certificate))
    assert tls_only is not None
    assert "without a token" in tls_only and "without TLS" not in tls_only
    # Both: the port is protected, and nothing is said.
    both = exposure(
        ClusterConfig(endpoint="https://0.0.0.0:8443", tls=certificate, auth_token="t0ken")
    )
    assert both is None


async def test_a_cluster_beyond_loopback_logs_the_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = _free_port()
    with caplog.at_level(logging.WARNING, "flame.local"):
        async with LocalCluster(ClusterConfig(slots=1, endpoint=f"http://0.0.0.0:{port}")):
            pass
    warnings = [r for r in caplog.records if "beyond this machine" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


@pytest.mark.parametrize("level", ["info", "error"])
async def test_flame_local_beyond_loopback_warns_on_stderr(level: str) -> None:
    port = _free_port()
    command = [
        *_flame_local(),
        "--endpoint",
        f"http://0.0.0.0:{port}",
        "--slots",
        "1",
        "--log-level",
        level,
    ]
    env = {k: v for k, v in os.environ.items() if k != "FLAME_AUTH_TOKEN"}
    process = await anyio.open_process(command, env=env)
    try:
        await _first_line(process)
        process.terminate()
        with anyio.fail_after(30):
            await process.wait()
        assert process.stderr is not None
        errors = (await process.stderr.receive()).decode()
        while True:
            try:
                errors += (await process.stderr.receive()).decode()
            except anyio.EndOfStream:
                break
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()
    # Once, whatever the log level.
    assert errors.count("beyond this machine") == 1, errors
    assert "without TLS" in errors
