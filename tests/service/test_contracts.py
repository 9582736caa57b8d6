"""How the environment picks a contract, and what a bad one says; the Instance client's errors."""

from __future__ import annotations

import logging
import tempfile

import pytest

from flame import FlameError, FlameErrorCode
from flame.service._contracts import GrpcShimContract, InstanceContract, contract_for
from flame.service._instance_client import InstanceClient


def test_v06_is_chosen_by_its_socket_path() -> None:
    contract = contract_for({"FLAME_INSTANCE_ENDPOINT": "/var/flame/executors/e1.sock"})
    assert isinstance(contract, InstanceContract)
    assert (contract.wire, contract.path) == ("v0.6", "/var/flame/executors/e1.sock")


def test_v05_is_chosen_by_its_executor_id() -> None:
    contract = contract_for({"FLAME_EXECUTOR_ID": "e-42"})
    assert isinstance(contract, InstanceContract)
    assert (contract.wire, contract.path) == ("v0.5", "/tmp/flame/shim/e-42/fsi.sock")


def test_v04_is_chosen_by_its_manager_with_the_token_when_given() -> None:
    contract = contract_for({"FLAME_SERVICE_MANAGER": "http://127.0.0.1:5000"})
    assert isinstance(contract, GrpcShimContract)
    assert contract.manager == "http://127.0.0.1:5000"


def test_when_several_are_set_the_first_wins_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="flame.service")
    contract = contract_for(
        {
            "FLAME_SERVICE_MANAGER": "http://127.0.0.1:5000",
            "FLAME_INSTANCE_ENDPOINT": "/run/s.sock",
            "FLAME_EXECUTOR_ID": "e1",
        }
    )
    assert isinstance(contract, InstanceContract) and contract.wire == "v0.6"
    assert contract_for(
        {"FLAME_SERVICE_MANAGER": "http://127.0.0.1:5000", "FLAME_EXECUTOR_ID": "e1"}
    ).name == ("the v0.4 Grpc shim contract")
    assert (
        "FLAME_INSTANCE_ENDPOINT and FLAME_SERVICE_MANAGER and FLAME_EXECUTOR_ID are all set"
        in (caplog.text)
    )


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({}, "no Flame executor started this service"),
        ({"FLAME_SERVICE_MANAGER": "  "}, "no Flame executor started this service"),
        (
            {"FLAME_INSTANCE_ENDPOINT": "unix:///run/s.sock"},
            "FLAME_INSTANCE_ENDPOINT='unix:///run/s.sock' is not usable: it must be the "
            "filesystem path of a Unix socket, with no scheme",
        ),
        ({"FLAME_EXECUTOR_ID": "../etc"}, "FLAME_EXECUTOR_ID='../etc' is not usable"),
        ({"FLAME_SERVICE_MANAGER": "localhost"}, "FLAME_SERVICE_MANAGER is not usable"),
    ],
)
def test_a_bad_environment_says_what_is_wrong(environ: dict[str, str], says: str) -> None:
    with pytest.raises(FlameError) as bad:
        contract_for(environ)
    assert bad.value.code is FlameErrorCode.INVALID_CONFIG
    assert says in bad.value.message


async def test_a_socket_that_never_appears_is_a_clear_error() -> None:
    with tempfile.TemporaryDirectory(prefix="fl-", dir="/tmp") as directory:
        path = f"{directory}/never.sock"
        with pytest.raises(FlameError) as missing:
            await InstanceClient.connect(path, "v0.6", wait=0.1)
    assert missing.value.code is FlameErrorCode.UNAVAILABLE
    assert f"the service's socket {path} did not appear within 0.1 s" in missing.value.message


async def test_an_instance_client_is_for_the_wires_that_have_the_contract() -> None:
    with pytest.raises(FlameError) as unknown:
        await InstanceClient.connect("/tmp/x.sock", "v0.4", wait=0)  # type: ignore[arg-type]
    assert unknown.value.code is FlameErrorCode.INVALID_ARGUMENT
    assert "wire 'v0.4' has no Instance contract" in unknown.value.message
