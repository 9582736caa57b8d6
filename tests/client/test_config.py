"""Where flame.connect() goes when it is given no address."""

from __future__ import annotations

from pathlib import Path

import pytest
from v04_server import V04Server

import flame
from flame._config import default_endpoint


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FLAME_ENDPOINT", raising=False)
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
