"""ClusterConfig and flame-conf.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from flame._errors import FlameError, FlameErrorCode
from flame._proto.v04 import flame as pb
from flame.local import ApplicationConfig, ClusterConfig, LocalCluster, RetentionConfig, TlsConfig
from flame.local._command import LocalOptions, cluster_config
from flame.local._config import TOKEN_VARIABLE, parse_duration
from flame.local._model import Shim


def test_reads_every_key_of_flame_conf(tmp_path: Path) -> None:
    path = tmp_path / "flame-conf.yaml"
    path.write_text(
        """
name: mine
endpoint: http://127.0.0.1:9999
slot: cpu=2,mem=4g
policy: proportion
storage: mem
applications:
  - name: pi
    shim: Stdio
    command: python3
    arguments: [pi.py, 10]
    environments: [A=1, B=x=y]
    working_directory: /tmp
  - name: ping
"""
    )
    config = ClusterConfig.load(path, slots=3)
    assert (config.name, config.endpoint, config.slot, config.slots) == (
        "mine",
        "http://127.0.0.1:9999",
        "cpu=2,mem=4g",
        3,
    )
    assert (config.host, config.port) == ("127.0.0.1", 9999)
    pi, ping = config.applications
    app = pi.application()
    assert (app.shim, app.command, app.arguments) == (Shim.STDIO, "python3", ("pi.py", "10"))
    assert app.environments == (("A", "1"), ("B", "x=y"))
    assert app.working_directory == "/tmp"
    assert ping == ApplicationConfig("ping")
    assert ping.application().shim is Shim.LOG
    assert ping.application("v0.6").shim is Shim.HOST


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("colour: red\n", ["unknown key(s) colour"]),
        ("- a\n- b\n", ["no mapping"]),
        ("applications: [{shim: Log}]\n", ["no `name`"]),
        ("applications: [{name: a, shim: Fancy}]\n", ["unknown shim 'Fancy'"]),
        ("applications: [{name: a, environments: [NOPE]}]\n", ["NOPE", "NAME=VALUE"]),
        ("applications: [{name: a}, {name: a}]\n", ["more than once: a"]),
        ("applications: [{name: a, colour: 1}]\n", ["unknown key(s) colour"]),
        ("policy: priority\n", ["proportion"]),
        ("slot: lots\n", ["cpu=1,mem=2g"]),
        ("storage: redis://x\n", ["'mem'", "sqlite://<path>"]),
        ("storage: 'sqlite://'\n", ["names no file"]),
        ("storage: 'sqlite://:memory:'\n", ["database file", "'mem'"]),
        ("storage: 'sqlite://flame.db?mode=rwc'\n", ["'?'"]),
        ("endpoint: nowhere\n", ["endpoint"]),
        ("endpoint: https://127.0.0.1:1\n", ["to serve https", "tls", "cert_file"]),
        ("tls: {cert_file: a.pem}\n", ["both cert_file and key_file", "key_file is missing"]),
        ("tls: {cert_file: a, key_file: b, ca_file: c}\n", ["ca_file", "not supported"]),
        ("tls: {cert: a}\n", ["unknown key(s) cert in `tls`"]),
        ("tls: a.pem\n", ["`tls` is a mapping"]),
        ("auth_token: 12345\n", ["`auth_token` is a string"]),
        ("auth_token: 'a b'\n", ["printable ASCII without spaces", "secrets.token_urlsafe"]),
        ("retention: {max_age: soon}\n", ["'soon' is not a duration", "15m"]),
        ("retention: {max_age: 0}\n", ["above 0"]),
        ("retention: {max_closed_sessions: -1}\n", ["0 or more"]),
        ("retention: {max_closed_sessions: many}\n", ["is a number"]),
        ("retention: {keep: 1}\n", ["unknown key(s) keep in `retention`"]),
        ("a: [\n", ["not valid YAML"]),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "flame-conf.yaml"
    path.write_text(text)
    with pytest.raises(FlameError) as info:
        ClusterConfig.load(path)
    assert info.value.code is FlameErrorCode.INVALID_CONFIG
    for word in words:
        assert word in info.value.message


def test_reads_tls_token_and_retention(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    path = tmp_path / "flame-conf.yaml"
    path.write_text(
        """
endpoint: https://0.0.0.0:8443
tls:
  cert_file: /etc/flame/server.pem
  key_file: /etc/flame/server.key
auth_token: s3cret-Token
retention:
  max_age: 2h
  max_closed_sessions: 50
"""
    )
    config = ClusterConfig.load(path)
    assert config.tls == TlsConfig("/etc/flame/server.pem", "/etc/flame/server.key")
    assert config.auth_token == "s3cret-Token"
    assert "s3cret" not in repr(config)
    assert config.retention == RetentionConfig(max_age=7200.0, max_closed_sessions=50)
    # Without a token in the file, the environment's is taken.
    path.write_text("retention: {max_age: 90}\n")
    assert ClusterConfig.load(path).auth_token is None
    monkeypatch.setenv(TOKEN_VARIABLE, "from-the-environment")
    config = ClusterConfig.load(path)
    assert (config.auth_token, config.retention.max_age) == ("from-the-environment", 90.0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("1.5m", 90.0), ("2h", 7200.0), ("7d", 604800.0), (30, 30.0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, "x") == seconds


def test_missing_file_and_bad_values() -> None:
    with pytest.raises(FlameError, match="cannot read it"):
        ClusterConfig.load("/nonexistent/flame-conf.yaml")
    with pytest.raises(FlameError, match="1 or more"):
        ClusterConfig(slots=0)


async def test_a_config_application_the_cluster_cannot_run_stops_the_start() -> None:
    cluster = LocalCluster(slots=1, applications=[ApplicationConfig("w", shim=pb.Shim.Wasm)])
    with pytest.raises(FlameError) as info:
        async with cluster:
            pass
    assert info.value.code is FlameErrorCode.INVALID_CONFIG
    assert "Wasm" in info.value.message


async def test_a_cluster_cannot_be_entered_twice() -> None:
    async with LocalCluster(slots=1) as cluster:
        with pytest.raises(FlameError, match="already running"):
            await cluster.__aenter__()


def test_flame_local_options_win_over_the_file_key_by_key(tmp_path: Path) -> None:
    path = tmp_path / "flame-conf.yaml"
    path.write_text("retention: {max_closed_sessions: 5, max_age: 60}\n")
    config = cluster_config(LocalOptions(config=str(path), retention_max_age="1h"))
    assert config.retention == RetentionConfig(max_age=3600.0, max_closed_sessions=5)
    assert config.endpoint == "http://127.0.0.1:8080"
    options = LocalOptions(retention_max_closed=3, tls_cert="c", tls_key="k")
    config = cluster_config(options)
    assert config.retention == RetentionConfig(max_closed_sessions=3)
    assert config.tls == TlsConfig("c", "k")
    with pytest.raises(FlameError, match="--retention-max-age: 'soon' is not a duration"):
        cluster_config(LocalOptions(retention_max_age="soon"))
