"""Where flame.connect() goes when it is given no address, with which CA file, on which wire."""

from __future__ import annotations

from pathlib import Path

import pytest
from v04_server import V04Server
from v06_server import WireServer

import flame
from flame._config import ClientConfig, client_config, default_endpoint


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("FLAME_ENDPOINT", "FLAME_CA_FILE", "FLAME_WIRE"):
        monkeypatch.delenv(variable, raising=False)
    (tmp_path / ".flame").mkdir()
    return tmp_path


def _write(home: Path, text: str) -> None:
    (home / ".flame" / flame.DEFAULT_FLAME_CONF).write_text(text)


def test_default_without_env_or_file(home: Path) -> None:
    assert default_endpoint() == flame.DEFAULT_FLAME_ENDPOINT


def test_the_flame_context_of_the_file(home: Path) -> None:
    _write(home, "name: flame\nendpoint: http://10.0.0.1:9000\nslot: cpu=1,mem=2g\n")
    assert default_endpoint() == "http://10.0.0.1:9000"


def test_a_file_without_name_is_the_flame_context(home: Path) -> None:
    _write(home, "endpoint: http://10.0.0.2:9000\n")
    assert default_endpoint() == "http://10.0.0.2:9000"


def test_another_context_is_not_used(home: Path) -> None:
    _write(home, "name: other\nendpoint: http://10.0.0.3:9000\n")
    assert default_endpoint() == flame.DEFAULT_FLAME_ENDPOINT


def test_a_list_of_contexts(home: Path) -> None:
    _write(
        home,
        "contexts:\n"
        "  - name: other\n    endpoint: http://10.0.0.4:1\n"
        "  - name: flame\n    endpoint: http://10.0.0.5:2\n",
    )
    assert default_endpoint() == "http://10.0.0.5:2"


def test_the_environment_wins(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(home, "endpoint: http://10.0.0.6:9000\n")
    monkeypatch.setenv("FLAME_ENDPOINT", "http://10.0.0.7:9000")
    assert default_endpoint() == "http://10.0.0.7:9000"


@pytest.mark.parametrize(
    ("text", "words"), [("endpoint: [unclosed\n", "cannot read"), ("- a\n- b\n", "mapping")]
)
def test_a_broken_file_is_a_config_error(home: Path, text: str, words: str) -> None:
    _write(home, text)
    with pytest.raises(flame.FlameError) as caught:
        default_endpoint()
    assert caught.value.code == flame.FlameErrorCode.INVALID_CONFIG
    assert words in caught.value.message and flame.DEFAULT_FLAME_CONF in caught.value.message


async def test_connect_without_address_uses_the_environment(
    v04: V04Server, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLAME_ENDPOINT", v04.endpoint)
    async with await flame.connect() as conn:
        assert conn.endpoint == v04.endpoint
        assert await conn.list_applications() == []


async def test_connect_without_address_uses_the_file(v04: V04Server, home: Path) -> None:
    _write(home, f"name: flame\nendpoint: {v04.endpoint}\n")
    async with await flame.Connection.connect() as conn:
        assert conn.endpoint == v04.endpoint
        assert await conn.list_sessions() == []


# -- v0.6's ~/.flame/flame.yaml ---------------------------------------------------

FLAME_YAML = """
current-context: prod
contexts:
  - name: dev
    cluster:
      endpoint: http://127.0.0.1:8080
  - name: prod
    cluster:
      endpoint: https://flame.example.com:8080
      tls:
        ca_file: /etc/flame/ca.pem
    cache:
      endpoint: grpcs://flame-cache:9090
"""


def _write_yaml(home: Path, text: str) -> None:
    (home / ".flame" / "flame.yaml").write_text(text)


def test_the_current_context_of_flame_yaml(home: Path) -> None:
    _write_yaml(home, FLAME_YAML)
    assert client_config() == ClientConfig(
        endpoint="https://flame.example.com:8080", ca_file="/etc/flame/ca.pem", wire=None
    )
    assert client_config("dev") == ClientConfig(endpoint="http://127.0.0.1:8080")


@pytest.mark.parametrize(
    ("text", "context", "words"),
    [
        ("contexts: []\n", None, "current-context is not set"),
        (
            FLAME_YAML.replace("current-context: prod", "current-context: gone"),
            None,
            "context gone not found",
        ),
        (FLAME_YAML, "nope", "context nope not found"),
        (FLAME_YAML.replace("endpoint: http://127.0.0.1:8080", "endpoint: 5"), "dev", "endpoint"),
        (
            FLAME_YAML.replace(
                "    cluster:\n      endpoint: https",
                "    cluster:\n      wire: v9\n      endpoint: https",
            ),
            None,
            "wire",
        ),
    ],
)
def test_flame_yaml_errors_are_config_errors(
    home: Path, text: str, context: str | None, words: str
) -> None:
    _write_yaml(home, text)
    with pytest.raises(flame.FlameError) as caught:
        client_config(context)
    assert caught.value.code == flame.FlameErrorCode.INVALID_CONFIG
    assert words in caught.value.message and "flame.yaml" in caught.value.message


def test_flame_yaml_wins_over_flame_conf_yaml(home: Path) -> None:
    _write(home, "endpoint: http://10.0.0.8:1\n")
    _write_yaml(home, FLAME_YAML)
    assert client_config().endpoint == "https://flame.example.com:8080"


def test_the_environment_over_flame_yaml(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_yaml(home, FLAME_YAML)
    monkeypatch.setenv("FLAME_ENDPOINT", "https://other:9000")
    monkeypatch.setenv("FLAME_CA_FILE", "/from/env.pem")
    # FLAME_CA_FILE only where the file gave none.
    assert client_config() == ClientConfig(
        endpoint="https://other:9000", ca_file="/etc/flame/ca.pem"
    )
    assert client_config("dev") == ClientConfig(
        endpoint="https://other:9000", ca_file="/from/env.pem"
    )
    # A plaintext endpoint is plaintext whatever the CA file.
    monkeypatch.setenv("FLAME_ENDPOINT", "http://other:9000")
    assert client_config("dev").ca_file is None


def test_the_wire_from_the_files_and_the_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(home, "endpoint: http://10.0.0.9:1\nwire: v0.5\n")
    assert client_config().wire == "v0.5"
    _write_yaml(
        home,
        FLAME_YAML.replace(
            "        ca_file: /etc/flame/ca.pem",
            "        ca_file: /etc/flame/ca.pem\n      wire: '0.6'",
        ),
    )
    assert client_config().wire == "v0.6"
    monkeypatch.setenv("FLAME_WIRE", "v0.4")
    assert client_config().wire == "v0.4"
    monkeypatch.setenv("FLAME_WIRE", "v1")
    with pytest.raises(flame.FlameError) as caught:
        client_config()
    assert caught.value.code == flame.FlameErrorCode.INVALID_CONFIG
    assert "FLAME_WIRE" in caught.value.message


async def test_connect_uses_the_context_and_its_wire(v06: WireServer, home: Path) -> None:
    _write_yaml(
        home,
        "current-context: one\n"
        "contexts:\n"
        "  - name: one\n    cluster:\n      endpoint: http://127.0.0.1:9\n"
        f"  - name: test\n    cluster:\n      endpoint: {v06.endpoint}\n      wire: v0.6\n",
    )
    async with await flame.connect(context="test") as conn:
        assert (conn.endpoint, conn.wire) == (v06.endpoint, "v0.6")
        await conn.list_sessions()
    assert await v06.calls() == ["ListSession"]  # the wire was named: no probe
    with pytest.raises(flame.FlameError) as caught:
        await flame.connect(v06.endpoint, context="test")
    assert caught.value.code == flame.FlameErrorCode.INVALID_ARGUMENT


async def test_connect_probes_without_a_wire_in_the_config(
    v06: WireServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLAME_ENDPOINT", v06.endpoint)
    async with await flame.connect() as conn:
        assert conn.wire == "v0.6"
