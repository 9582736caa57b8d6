"""Where the client connects when no address is given, and the token it presents.

The endpoint, in order: the ``FLAME_ENDPOINT`` environment variable; else
the ``endpoint`` of the ``flame`` context in ``~/.flame/flame-conf.yaml``;
else ``DEFAULT_FLAME_ENDPOINT``. The token: ``FLAME_AUTH_TOKEN``; else the
``auth_token`` of that context; else none. The file is the cluster's own
configuration file (top-level keys ``name``, ``endpoint``, ...); a file
holding several contexts as a ``contexts`` list of such mappings is read too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._errors import FlameError, FlameErrorCode
from ._types import DEFAULT_CONTEXT_NAME, DEFAULT_FLAME_CONF, DEFAULT_FLAME_ENDPOINT

__all__ = ["TOKEN_VARIABLE", "config_path", "default_auth_token", "default_endpoint"]

ENDPOINT_VARIABLE = "FLAME_ENDPOINT"
#: Where the token a client presents is read from when it is given none.
TOKEN_VARIABLE = "FLAME_AUTH_TOKEN"


def config_path() -> Path:
    """``~/.flame/flame-conf.yaml`` (``~`` is ``$HOME``)."""
    return Path(os.path.expanduser("~")) / ".flame" / DEFAULT_FLAME_CONF


def default_endpoint() -> str:
    """The endpoint to use when the caller names none (see the module's text)."""
    from_env = os.environ.get(ENDPOINT_VARIABLE, "").strip()
    if from_env:
        return from_env
    path = config_path()
    if path.is_file():
        endpoint = _endpoint_from_file(path)
        if endpoint:
            return endpoint
    return DEFAULT_FLAME_ENDPOINT


def _endpoint_from_file(path: Path) -> str | None:
    context = _flame_context(path)
    endpoint = None if context is None else context.get("endpoint")
    if endpoint is None:
        return None
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise FlameError(
            FlameErrorCode.INVALID_CONFIG,
            f"the endpoint of context {DEFAULT_CONTEXT_NAME!r} in {path} must be a URL "
            f"such as {DEFAULT_FLAME_ENDPOINT!r}, not {endpoint!r}",
        )
    return endpoint.strip()


def default_auth_token() -> str | None:
    """The token to present when the caller gives none, or None.

    ``FLAME_AUTH_TOKEN`` if set, else the ``auth_token`` of the ``flame``
    context in ``~/.flame/flame-conf.yaml`` (the key the cluster's own file
    has), else None.
    """
    from_env = os.environ.get(TOKEN_VARIABLE, "").strip()
    if from_env:
        return from_env
    path = config_path()
    if not path.is_file():
        return None
    context = _flame_context(path)
    token = None if context is None else context.get("auth_token")
    if token is None:
        return None
    if not isinstance(token, str) or not token.strip():
        raise FlameError(
            FlameErrorCode.INVALID_CONFIG,
            f"the auth_token of context {DEFAULT_CONTEXT_NAME!r} in {path} must be a "
            "non-empty string; quote it",
        )
    return token.strip()


def _flame_context(path: Path) -> Mapping[str, Any] | None:
    """The ``flame`` context in the file at ``path``: the first with an endpoint or token."""
    import yaml  # only when there is a file to read: keeps `import flame` light

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise FlameError(
            FlameErrorCode.INVALID_CONFIG,
            f"cannot read {path}: {exc}; fix the file, or set {ENDPOINT_VARIABLE}",
        ) from None
    if document is None:
        return None
    if not isinstance(document, Mapping):
        raise FlameError(
            FlameErrorCode.INVALID_CONFIG,
            f"{path} must hold a mapping with 'name' and 'endpoint' keys",
        )
    contexts: list[Any] = [document]
    listed = document.get("contexts")
    if isinstance(listed, list):
        contexts.extend(listed)
    for context in contexts:
        if not isinstance(context, Mapping):
            continue
        if context.get("name", DEFAULT_CONTEXT_NAME) != DEFAULT_CONTEXT_NAME:
            continue
        if context.get("endpoint") is None and context.get("auth_token") is None:
            continue
        return context
    return None
