"""The contracts between a Flame executor and the service it starts, one module each.

Every Flame version has its executor start the service's program and call
it; how it calls is the contract, and the environment the executor gives
the program says which one it speaks (:func:`contract_for`), the first of
these variables that is set:

``FLAME_INSTANCE_ENDPOINT``
    Flame v0.6: serve ``flame.v1.Instance`` on the Unix socket at that path
    (:mod:`._instance`).
``FLAME_SERVICE_MANAGER``
    Flame v0.4 and ``flame local``: serve ``flame.GrpcShim`` on TCP and
    register it with the manager at that address (:mod:`._v04`).
``FLAME_EXECUTOR_ID``
    Flame v0.5: serve ``flame.Instance`` on
    ``/tmp/flame/shim/<executor id>/fsi.sock`` (:mod:`._instance`).

:mod:`._base` holds what they share: the :class:`Contract` each one is,
the :class:`Calls` the runtime hands it, and how a call ends when no
handler answers it (:class:`CallRefused`) or a handler fails
(:class:`HandlerFailed`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..._errors import FlameError, FlameErrorCode
from ._base import CallRefused, Calls, Contract, HandlerFailed, edge_mapping
from ._instance import ENDPOINT_VARIABLE, EXECUTOR_VARIABLE, InstanceContract
from ._v04 import MANAGER_VARIABLE, TOKEN_HEADER, TOKEN_VARIABLE, GrpcShimContract

__all__ = [
    "ENDPOINT_VARIABLE",
    "EXECUTOR_VARIABLE",
    "MANAGER_VARIABLE",
    "TOKEN_HEADER",
    "TOKEN_VARIABLE",
    "CallRefused",
    "Calls",
    "Contract",
    "GrpcShimContract",
    "HandlerFailed",
    "InstanceContract",
    "contract_for",
    "edge_mapping",
]

log = logging.getLogger("flame.service")

#: The variables that name a contract, the first set winning.
_CHOICE = (ENDPOINT_VARIABLE, MANAGER_VARIABLE, EXECUTOR_VARIABLE)


def contract_for(environ: Mapping[str, str]) -> Contract:
    """The contract the executor that started this process speaks, from its environment.

    Raises FlameError(INVALID_CONFIG) when no executor's variable is set,
    saying which ones an executor sets and how a service is run.
    """
    named = [name for name in _CHOICE if environ.get(name, "").strip()]
    if not named:
        raise FlameError(
            FlameErrorCode.INVALID_CONFIG,
            f"no Flame executor started this service: an executor sets {ENDPOINT_VARIABLE} "
            f"(Flame v0.6), {MANAGER_VARIABLE} (Flame v0.4, and `flame local`) or "
            f"{EXECUTOR_VARIABLE} (Flame v0.5), and none of them is set. Register the program "
            "as an application (shim Grpc on v0.4 and `flame local`, Host on v0.5 and v0.6) "
            "with its command and arguments, and create a session of it: the executor starts it. "
            f"To run it by hand, set {ENDPOINT_VARIABLE} to the path of the Unix socket to "
            f"serve on, or {MANAGER_VARIABLE}=http://127.0.0.1:<port> to a GrpcServiceManager.",
        )
    chosen = named[0]
    if len(named) > 1:
        log.warning(
            "%s are all set; serving the contract of %s, the first of them",
            " and ".join(named),
            chosen,
        )
    if chosen == MANAGER_VARIABLE:
        return GrpcShimContract.from_environment(environ)
    return InstanceContract.from_environment(environ)
