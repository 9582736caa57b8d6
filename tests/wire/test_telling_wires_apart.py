"""The facts a client tells v0.4, v0.5 and v0.6 apart by are in our generated code.

``flame-v0.6.md`` §11: a server answers UNIMPLEMENTED for a path it does not
serve, and the three Frontends serve these probe paths:

| call | v0.4 | v0.5 | v0.6 |
|---|---|---|---|
| ``/flame.v1.Frontend/ListApplication`` | - | - | OK |
| ``/flame.Frontend/ListApplication`` | OK | OK | - |
| ``/flame.Frontend/ListExecutor`` | - | OK | - |

Each probe's request has no fields, so an empty message is sent. Here the
table is held against the paths our generated server bases serve and our
client stubs call, wire by wire.
"""

from __future__ import annotations

import grpclib.const
import pytest

from .pages import WIRES, generated
from .stubs import stub_requests

V06_LIST_APPLICATION = "/flame.v1.Frontend/ListApplication"
LIST_APPLICATION = "/flame.Frontend/ListApplication"
LIST_EXECUTOR = "/flame.Frontend/ListExecutor"

# path -> the wires whose Frontend serves it
SERVED_BY = {
    V06_LIST_APPLICATION: {"v0.6"},
    LIST_APPLICATION: {"v0.4", "v0.5"},
    LIST_EXECUTOR: {"v0.5"},
}
# path -> (stub method, request message)
PROBES = {
    V06_LIST_APPLICATION: ("list_application", "ListApplicationRequest"),
    LIST_APPLICATION: ("list_application", "ListApplicationRequest"),
    LIST_EXECUTOR: ("list_executor", "ListExecutorRequest"),
}


def frontend_paths(wire: str) -> set[str]:
    """Every path the wire's generated Frontend server base serves."""
    return set(generated(wire).FrontendBase().__mapping__())


@pytest.mark.parametrize("path", sorted(SERVED_BY))
def test_each_probe_path_is_served_by_exactly_the_wires_of_the_table(path: str) -> None:
    assert {wire for wire in WIRES if path in frontend_paths(wire)} == SERVED_BY[path]


@pytest.mark.parametrize("path", sorted(SERVED_BY))
def test_the_client_stubs_of_those_wires_call_the_probe_path_with_an_empty_request(
    path: str,
) -> None:
    method, request = PROBES[path]
    for wire in sorted(SERVED_BY[path]):
        pb = generated(wire)
        message = getattr(pb, request)()
        assert bytes(message) == b""
        assert not message.__dataclass_fields__, f"{wire} {request} has fields"
        (call,) = stub_requests(pb, "Frontend", method, message, streamed_reply=False)
        assert call[:2] == (path, grpclib.const.Cardinality.UNARY_UNARY)


def _probe(served: set[str]) -> str:
    """The wire the two probes of §11 name, for a server serving ``served``."""
    if V06_LIST_APPLICATION in served:
        return "v0.6"
    assert LIST_APPLICATION in served, "not a Flame Frontend of any wire"
    return "v0.5" if LIST_EXECUTOR in served else "v0.4"


@pytest.mark.parametrize("wire", WIRES)
def test_the_two_probes_tell_each_wire_from_its_generated_frontend(wire: str) -> None:
    assert _probe(frontend_paths(wire)) == wire


def test_the_same_field_number_means_different_things_before_the_probe() -> None:
    # Why a reply is decoded only once the wire is known: ApplicationSpec
    # field 2 is `url` on v0.4 and `description` on v0.5 and v0.6.
    spec = bytes(generated("v0.4").ApplicationSpec(url="http://x"))
    assert generated("v0.5").ApplicationSpec.parse(spec).description == "http://x"
    assert generated("v0.6").ApplicationSpec.parse(spec).description == "http://x"
