"""Every wire page the SDK speaks, by wire name."""

from __future__ import annotations

import importlib
from types import ModuleType

from .page_v04 import PAGE as V04
from .page_v05 import PAGE as V05
from .page_v06 import PAGE as V06
from .wire_page import WirePage

PAGES: dict[str, WirePage] = {page.wire: page for page in (V04, V05, V06)}
WIRES = tuple(PAGES)


def generated(wire: str) -> ModuleType:
    """The module of our committed code generated for ``wire``."""
    return importlib.import_module(PAGES[wire].generated)
