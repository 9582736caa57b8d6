"""Where the client connects when no address is given: CA file, wire, and the token it presents.

Two files are read, both optional, in ``~/.flame/`` (``~`` is ``$HOME``):

``flame.yaml`` (Flame v0.6's client file)
    ``current-context`` names one of ``contexts``; that context's
    ``cluster.endpoint`` is the endpoint, ``cluster.tls.ca_file`` the CA
    file, and ``cluster.wire`` (this SDK's own key) the wire. Its errors,
    as v0.6's client words them: "current-context is not set", "context X
    not found".
``flame-conf.yaml`` (v0.4's and v0.5's, and ``flame local``'s)
    its top-level ``endpoint``, ``wire`` and ``auth_token``, or those of the
    entry named ``flame`` in a ``contexts`` list of such mappings.

When both exist, ``flame.yaml`` is used and ``flame-conf.yaml`` is not
read: it is the file of the current Flame client, and ``flame-conf.yaml``
is often a cluster's own configuration. ``connect(context=...)`` names
another context than the current one (or than ``flame``).

Then the environment, as v0.6's client applies it: ``FLAME_ENDPOINT``
replaces the endpoint; ``FLAME_CA_FILE`` sets the CA file only where the
file gave none; ``FLAME_WIRE`` replaces the wire; ``FLAME_AUTH_TOKEN``
replaces the token (:func:`default_auth_token`). With none of these, the
endpoint is ``DEFAULT_FLAME_ENDPOINT`` and the wire is found by asking the
server. A CA file applies to ``https://`` endpoints only: ``http://`` is
plaintext whatever the file says.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ._errors import FlameError, FlameErrorCode
from ._types import DEFAULT_CONTEXT_NAME, DEFAULT_FLAME_CONF, DEFAULT_FLAME_ENDPOINT

__all__ = [
    "CA_FILE_VARIABLE",
    "ENDPOINT_VARIABLE",
    "FLAME_YAML",
    "TOKEN_VARIABLE",
    "WIRE_VARIABLE",
    "ClientConfig",
    "client_config",
    "config_path",
    "default_auth_token",
    "default_endpoint",
    "flame_yaml_path",
]

ENDPOINT_VARIABLE = "FLAME_ENDPOINT"
#: Where the token a client presents is read from when it is given none.
TOKEN_VARIABLE = "FLAME_AUTH_TOKEN"
CA_FILE_VARIABLE = "FLAME_CA_FILE"
WIRE_VARIABLE = "FLAME_WIRE"
FLAME_YAML = "flame.yaml"
"""The client file of Flame v0.6, looked up in ``~/.flame/``."""


@attrs.frozen
class ClientConfig:
    """Where to connect and how, as the files and the environment say."""

    endpoint: str
    ca_file: str | None = None
    """The CA file for an ``https://`` endpoint (None for ``http://``)."""
    wire: str | None = None
    """The wire named by the configuration, or None: ask the server."""
    auth_token: str | None = None
    """The token to present, or None."""


def _home() -> Path:
    return Path(os.path.expanduser("~")) / ".flame"


def config_path() -> Path:
    """``~/.flame/flame-conf.yaml``."""
    return _home() / DEFAULT_FLAME_CONF


def flame_yaml_path() -> Path:
    """``~/.flame/flame.yaml``."""
    return _home() / FLAME_YAML


def _config_error(path: Path, message: str) -> FlameError:
    return FlameError(FlameErrorCode.INVALID_CONFIG, f"{path}: {message}")


def _read(path: Path) -> Any:
    import yaml  # only when there is a file to read: keeps `import flame` light

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise FlameError(
            FlameErrorCode.INVALID_CONFIG,
            f"cannot read {path}: {exc}; fix the file, or set {ENDPOINT_VARIABLE}",
        ) from None


def _text(value: object, path: Path, key: str, example: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _config_error(path, f"{key} must be a string such as {example!r}, not {value!r}")
    return value.strip()


def _wire(value: object, path: Path, key: str) -> str | None:
    if value is None:
        return None
    from ._wires import check_wire_name

    return check_wire_name(value, f"{key} in {path}")


def _from_flame_yaml(path: Path, context: str | None) -> ClientConfig | None:
    """The endpoint, CA file and wire of the chosen context of a v0.6 ``flame.yaml``."""
    document = _read(path)
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise _config_error(path, "must hold a mapping with current-context and contexts")
    name = context if context is not None else document.get("current-context")
    if not name:
        raise _config_error(path, "current-context is not set")
    contexts = document.get("contexts") or []
    if not isinstance(contexts, list):
        raise _config_error(path, "contexts must be a list")
    for entry in contexts:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            break
    else:
        raise _config_error(path, f"context {name} not found")
    cluster = entry.get("cluster") or {}
    if not isinstance(cluster, Mapping):
        raise _config_error(path, f"the cluster of context {name} must be a mapping")
    tls = cluster.get("tls") or {}
    if not isinstance(tls, Mapping):
        raise _config_error(path, f"cluster.tls of context {name} must be a mapping")
    prefix = f"contexts[{name}].cluster."
    return ClientConfig(
        endpoint=_text(cluster.get("endpoint"), path, prefix + "endpoint", DEFAULT_FLAME_ENDPOINT)
        or "",
        ca_file=_text(tls.get("ca_file"), path, prefix + "tls.ca_file", "/etc/flame/ca.pem"),
        wire=_wire(cluster.get("wire"), path, prefix + "wire"),
    )


def _from_flame_conf(path: Path, context: str | None) -> ClientConfig | None:
    """The endpoint and wire of the ``flame`` context (or ``context``) of ``flame-conf.yaml``."""
    document = _read(path)
    if document is None:
        return None
    if not isinstance(document, Mapping):
        raise _config_error(path, "must hold a mapping with 'name' and 'endpoint' keys")
    wanted = DEFAULT_CONTEXT_NAME if context is None else context
    candidates: list[Any] = [document]
    listed = document.get("contexts")
    if isinstance(listed, list):
        candidates.extend(listed)
    for candidate in candidates:
        if not isinstance(candidate, Mapping):
            continue
        if candidate.get("name", DEFAULT_CONTEXT_NAME) != wanted:
            continue
        endpoint = candidate.get("endpoint")
        token = candidate.get("auth_token")
        if endpoint is None and token is None:
            continue
        if endpoint is not None and (not isinstance(endpoint, str) or not endpoint.strip()):
            raise _config_error(
                path,
                f"the endpoint of context {wanted!r} must be a URL such as "
                f"{DEFAULT_FLAME_ENDPOINT!r}, not {endpoint!r}",
            )
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise _config_error(
                path, f"the auth_token of context {wanted!r} must be a non-empty string; quote it"
            )
        return ClientConfig(
            endpoint=endpoint.strip() if endpoint else "",
            wire=_wire(candidate.get("wire"), path, "wire"),
            auth_token=token.strip() if token else None,
        )
    if context is not None:
        raise _config_error(path, f"context {context} not found")
    return None


def client_config(context: str | None = None) -> ClientConfig:
    """The configuration :func:`flame.connect` uses with no address (see the module's text).

    ``context`` names the context to use instead of the file's current one.
    Raises FlameError ``INVALID_CONFIG`` for a file that cannot be used.
    """
    found: ClientConfig | None = None
    yaml_path = flame_yaml_path()
    conf_path = config_path()
    if yaml_path.is_file():
        found = _from_flame_yaml(yaml_path, context)
    elif conf_path.is_file():
        found = _from_flame_conf(conf_path, context)
    elif context is not None:
        raise FlameError(
            FlameErrorCode.INVALID_CONFIG,
            f"context {context} not found: there is neither {yaml_path} nor {conf_path}",
        )
    endpoint = found.endpoint if found is not None and found.endpoint else ""
    ca_file = found.ca_file if found is not None else None
    wire = found.wire if found is not None else None
    token = os.environ.get(TOKEN_VARIABLE, "").strip() or (
        found.auth_token if found is not None else None
    )

    from_env = os.environ.get(ENDPOINT_VARIABLE, "").strip()
    if from_env:
        endpoint = from_env
    if ca_file is None:
        ca_file = os.environ.get(CA_FILE_VARIABLE, "").strip() or None
    wire_from_env = os.environ.get(WIRE_VARIABLE, "").strip()
    if wire_from_env:
        from ._wires import check_wire_name

        wire = check_wire_name(wire_from_env, WIRE_VARIABLE)
    endpoint = endpoint or DEFAULT_FLAME_ENDPOINT
    if not endpoint.lower().startswith("https://"):
        ca_file = None  # plaintext whatever the file says, as Flame's clients do
    return ClientConfig(endpoint=endpoint, ca_file=ca_file, wire=wire, auth_token=token)


def default_endpoint() -> str:
    """The endpoint to use when the caller names none (see the module's text)."""
    return client_config().endpoint


def default_auth_token(context: str | None = None) -> str | None:
    """The token to present when the caller gives none, or None.

    ``FLAME_AUTH_TOKEN`` if set, else the ``auth_token`` of the context
    (``flame`` in ``~/.flame/flame-conf.yaml``, the key the cluster's own
    file has), else None.
    """
    return client_config(context).auth_token
