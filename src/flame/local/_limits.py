"""Sizes the embedded cluster enforces."""

from __future__ import annotations

from .._transport import MAX_MESSAGE_BYTES

__all__ = ["MAX_MESSAGE_BYTES", "MAX_OUTPUT_BYTES"]

#: The largest task output a shim may give: what still fits in one message
#: with the task around it.
MAX_OUTPUT_BYTES = MAX_MESSAGE_BYTES - 64 * 1024
