"""The ``Frontend`` service of the embedded cluster, one module per wire.

A cluster speaks one wire, as a real Flame cluster does: ``v0.4`` (the
default, ``flame.Frontend``) or ``v0.6`` (``flame.v1.Frontend``). Each wire's
module reads its requests into the cluster's records (:mod:`.._model`),
enforces its wire's rules (which ids are valid, which state allows which
call, which status a refusal is), asks the session manager for the change,
and writes the answer as its wire's messages:

``_v04``
    Flame v0.4's session manager, with more precise refusals.
``_v06``
    Flame v0.6's session manager, as the page of its wire describes it
    (with its sqlite engine's behaviour).
``_serving``
    what both share: handlers from plain methods, checked requests, and no
    answer before its change is committed.
"""

from __future__ import annotations

from .._config import WIRES
from .._executors import ExecutorPool
from .._model import Application
from .._sessions import SessionManager
from ._serving import Service
from ._v04 import FrontendV04
from ._v04 import application_problem as _v04_problem
from ._v06 import FrontendV06
from ._v06 import application_problem as _v06_problem
from ._v06 import registered as _v06_registered

__all__ = ["WIRES", "frontend", "registrable"]


def registrable(wire: str, app: Application) -> Application | str:
    """``app`` as a cluster speaking ``wire`` registers it, or why it cannot."""
    if wire == "v0.4":
        return _v04_problem(app) or app
    return _v06_problem(app) or _v06_registered(app)


def frontend(wire: str, manager: SessionManager, pool: ExecutorPool) -> Service:
    """The ``Frontend`` service of ``wire``, ready to serve."""
    if wire == "v0.4":
        return FrontendV04(manager).service()
    return FrontendV06(manager, pool).service()
