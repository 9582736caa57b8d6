"""The embedded cluster's configuration, and ``flame-conf.yaml``.

A :class:`ClusterConfig` says where the cluster listens, how many executor
slots it has, and which applications it registers when it starts. It can be
built in code or read from a ``flame-conf.yaml`` with the keys a Flame cluster
reads: ``name``, ``endpoint``, ``slot``, ``policy``, ``storage`` and
``applications``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .._errors import FlameError, FlameErrorCode
from .._proto.v04 import flame as pb
from .._transport import Endpoint
from ._limits import MAX_MESSAGE_BYTES

__all__ = ["ApplicationConfig", "ClusterConfig"]

_KEYS = {"name", "endpoint", "slot", "policy", "storage", "applications"}
_APP_KEYS = {"name", "shim", "command", "arguments", "environments", "working_directory", "url"}
_SLOT = re.compile(r"^\s*cpu\s*=\s*\d+\s*,\s*mem\s*=\s*\d+[kmgt]?\s*$", re.IGNORECASE)


def _strings(values: Any) -> tuple[str, ...]:
    return tuple(str(value) for value in values)


def _bad(where: str, message: str) -> FlameError:
    return FlameError(FlameErrorCode.INVALID_CONFIG, f"{where}: {message}")


@attrs.frozen
class ApplicationConfig:
    """An application to register when the cluster starts."""

    name: str
    shim: pb.Shim = pb.Shim.Log
    command: str | None = None
    arguments: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    environments: Mapping[str, str] = attrs.field(factory=dict)
    working_directory: str | None = None
    url: str | None = None

    def spec(self) -> pb.ApplicationSpec:
        """The ApplicationSpec to register."""
        return pb.ApplicationSpec(
            shim=self.shim,
            url=self.url,
            command=self.command,
            arguments=list(self.arguments),
            environments=[f"{key}={value}" for key, value in self.environments.items()],
            working_directory=self.working_directory,
        )

    @classmethod
    def from_mapping(cls, entry: Any, where: str) -> ApplicationConfig:
        """Read one entry of ``applications`` in ``flame-conf.yaml``."""
        if not isinstance(entry, Mapping):
            raise _bad(where, "each application is a mapping with at least `name` and `shim`")
        unknown = sorted(set(map(str, entry)) - _APP_KEYS)
        if unknown:
            raise _bad(where, f"unknown key(s) {', '.join(unknown)}; known: {sorted(_APP_KEYS)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(where, "the application has no `name`")
        shim_name = entry.get("shim", "Log")
        try:
            shim = pb.Shim[str(shim_name)]
        except KeyError:
            known = ", ".join(s.name for s in pb.Shim)
            raise _bad(
                where, f"application {name!r}: unknown shim {shim_name!r}; one of {known}"
            ) from None
        arguments = entry.get("arguments") or []
        if not isinstance(arguments, list) or not all(
            isinstance(a, (str, int, float)) for a in arguments
        ):
            raise _bad(where, f"application {name!r}: `arguments` is a list of strings")
        environments = _environments(entry.get("environments"), f"{where}: application {name!r}")
        for key in ("command", "working_directory", "url"):
            value = entry.get(key)
            if value is not None and not isinstance(value, str):
                raise _bad(where, f"application {name!r}: `{key}` is a string")
        return cls(
            name=name,
            shim=shim,
            command=entry.get("command"),
            arguments=_strings(arguments),
            environments=environments,
            working_directory=entry.get("working_directory"),
            url=entry.get("url"),
        )


def _environments(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, list):
        result: dict[str, str] = {}
        for item in value:
            if not isinstance(item, str) or "=" not in item or item.startswith("="):
                raise _bad(where, f"environment entry {item!r} is not NAME=VALUE")
            key, _, val = item.partition("=")
            result[key] = val
        return result
    raise _bad(where, "`environments` is a list of NAME=VALUE strings or a mapping")


def _sqlite_path(storage: str) -> str:
    """The file named by ``sqlite://<path>``; INVALID_CONFIG for anything else."""
    prefix = "sqlite://"
    if not storage.startswith(prefix):
        raise _bad(
            "storage",
            f"{storage!r}: use 'mem' (gone when the cluster stops) or 'sqlite://<path>' "
            "(a database file, kept across restarts)",
        )
    path = storage[len(prefix) :]
    if not path:
        raise _bad("storage", f"{storage!r} names no file; use 'sqlite://flame.db', say")
    if path == ":memory:" or path.startswith("file:"):
        raise _bad(
            "storage",
            f"{storage!r}: give a database file, like 'sqlite://flame.db', "
            "or 'mem' to keep nothing across restarts",
        )
    if "?" in path:
        raise _bad(
            "storage",
            f"{storage!r}: options after '?' are not supported; give the path alone",
        )
    return path


def _default_slots() -> int:
    return os.cpu_count() or 1


@attrs.frozen
class ClusterConfig:
    """How an embedded cluster runs.

    ``endpoint`` None means 127.0.0.1 on a free port. ``slots`` is the
    executor capacity (a session asks for some slots per executor).
    ``storage`` is ``mem`` (nothing is kept when the cluster stops) or
    ``sqlite://<path>``: a database file, created if missing, relative to the
    current directory unless absolute (``sqlite:///var/lib/flame.db``).
    """

    name: str = "flame"
    endpoint: str | None = None
    slots: int = attrs.field(factory=_default_slots)
    slot: str = "cpu=1,mem=2g"
    policy: str = "proportion"
    storage: str = "mem"
    applications: tuple[ApplicationConfig, ...] = attrs.field(default=(), converter=tuple)
    max_message_bytes: int = MAX_MESSAGE_BYTES

    def __attrs_post_init__(self) -> None:
        if self.slots < 1:
            raise _bad("slots", f"{self.slots} executor slots; give 1 or more")
        if self.max_message_bytes < 1024:
            raise _bad("max_message_bytes", f"{self.max_message_bytes} is too small")
        if self.policy != "proportion":
            raise _bad("policy", f"{self.policy!r}: this cluster schedules by 'proportion' only")
        if not _SLOT.match(self.slot):
            raise _bad("slot", f"{self.slot!r} is not like 'cpu=1,mem=2g'")
        if self.storage != "mem":
            _sqlite_path(self.storage)
        if self.endpoint is not None:
            endpoint = Endpoint.parse(self.endpoint)
            if endpoint.tls:
                raise _bad("endpoint", f"{self.endpoint!r}: this cluster serves plain http only")
        names = [app.name for app in self.applications]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise _bad("applications", f"listed more than once: {', '.join(duplicates)}")

    @property
    def storage_path(self) -> str | None:
        """The database file of ``sqlite://<path>`` storage; None for ``mem``."""
        return None if self.storage == "mem" else _sqlite_path(self.storage)

    @property
    def host(self) -> str:
        return "127.0.0.1" if self.endpoint is None else Endpoint.parse(self.endpoint).host

    @property
    def port(self) -> int:
        return 0 if self.endpoint is None else Endpoint.parse(self.endpoint).port

    @classmethod
    def load(cls, path: str | os.PathLike[str], **overrides: Any) -> ClusterConfig:
        """Read ``flame-conf.yaml`` at ``path``; keyword arguments override its values."""
        import yaml

        where = os.fspath(path)
        try:
            with open(where, encoding="utf-8") as file:
                data = yaml.safe_load(file)
        except OSError as exc:
            raise _bad(where, f"cannot read it: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise _bad(where, f"not valid YAML: {exc}") from None
        return cls.from_mapping(data or {}, where, **overrides)

    @classmethod
    def from_mapping(
        cls, data: Any, where: str = "flame-conf.yaml", **overrides: Any
    ) -> ClusterConfig:
        """Build from the mapping a ``flame-conf.yaml`` holds."""
        if not isinstance(data, Mapping):
            raise _bad(where, "the file holds no mapping of keys")
        unknown = sorted(set(map(str, data)) - _KEYS)
        if unknown:
            raise _bad(where, f"unknown key(s) {', '.join(unknown)}; known: {sorted(_KEYS)}")
        entries = data.get("applications") or []
        if not isinstance(entries, Sequence) or isinstance(entries, str):
            raise _bad(where, "`applications` is a list")
        values: dict[str, Any] = {}
        for key in ("name", "endpoint", "slot", "policy", "storage"):
            if data.get(key) is not None:
                values[key] = str(data[key])
        values["applications"] = tuple(
            ApplicationConfig.from_mapping(entry, f"{where}: applications[{i}]")
            for i, entry in enumerate(entries)
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
