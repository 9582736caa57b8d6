"""Sizes the embedded cluster enforces."""

from __future__ import annotations

from .._transport import MAX_MESSAGE_BYTES

__all__ = ["MAX_MESSAGE_BYTES", "MAX_OUTPUT_BYTES"]

#: The most of a child's stdout a Stdio or Shell shim collects for a task's
#: output: the default message limit. The session manager holds every
#: output to the cluster's own ``max_message_bytes``.
MAX_OUTPUT_BYTES = MAX_MESSAGE_BYTES
