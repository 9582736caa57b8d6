"""The embedded cluster's configuration, and ``flame-conf.yaml``.

A :class:`ClusterConfig` says which wire the cluster speaks, where it
listens, how many executor slots it has, and which applications it registers
when it starts. It can be built in code or read from a ``flame-conf.yaml``
with the keys a Flame cluster reads: ``name``, ``endpoint``, ``slot``,
``policy``, ``storage`` and ``applications``; and those of this cluster:
``wire`` (``v0.4``, the default, or ``v0.6``), ``tls`` (:class:`TlsConfig`,
shaped as a Flame v0.6 cluster's ``cluster.tls``), ``auth_token`` (also read
from the ``FLAME_AUTH_TOKEN`` environment variable) and ``retention``
(:class:`RetentionConfig`).
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .._config import TOKEN_VARIABLE
from .._errors import FlameError, FlameErrorCode
from .._transport import Endpoint, ServerLimits
from .._transport._limits import DEFAULT_IDLE_TIMEOUT, check_message_limit
from .._types import ApplicationAttributes
from .._types import Shim as ClientShim
from ._limits import MAX_MESSAGE_BYTES
from ._model import Application, Shim

__all__ = [
    "TOKEN_VARIABLE",
    "WIRES",
    "ApplicationConfig",
    "ClusterConfig",
    "RetentionConfig",
    "TlsConfig",
    "load_applications",
    "parse_duration",
    "token_from_env",
]

_KEYS = {
    "name",
    "endpoint",
    "slot",
    "policy",
    "storage",
    "applications",
    "tls",
    "auth_token",
    "retention",
    "max_message_bytes",
    "idle_timeout",
    "max_connections",
    "wire",
}
_APP_KEYS = {
    "name",
    "shim",
    "command",
    "arguments",
    "environments",
    "working_directory",
    "url",
    "description",
    "labels",
    "image",
    "max_instances",
    "delay_release",
}
_TLS_KEYS = {"cert_file", "key_file"}
_RETENTION_KEYS = {"max_age", "max_closed_sessions"}
_SLOT = re.compile(r"^\s*cpu\s*=\s*\d+\s*,\s*mem\s*=\s*\d+[kmgt]?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|m|h|d)?\s*$")
_UNITS = {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

#: The wires the embedded cluster speaks; the first is the default.
WIRES = ("v0.4", "v0.6")


def _strings(values: Any) -> tuple[str, ...]:
    return tuple(str(value) for value in values)


def _bad(where: str, message: str) -> FlameError:
    return FlameError(FlameErrorCode.INVALID_CONFIG, f"{where}: {message}")


def _shim(value: Any) -> Shim | None:
    """A shim kind from its name, or from an enum of any wire's (by name): Log, Host, ..."""
    if value is None or isinstance(value, Shim):
        return value
    name = value.name if isinstance(value, enum.Enum) else value
    if isinstance(name, str):
        try:
            return Shim.named(name)
        except KeyError:
            pass
    known = ", ".join(kind.value for kind in Shim)
    raise _bad("shim", f"unknown shim {value!r}; one of {known}")


@attrs.frozen
class ApplicationConfig:
    """An application to register when the cluster starts.

    ``shim`` is a kind of the cluster's wire, by name (``"Log"``, ``"Host"``)
    or as an enum of a wire's or of the client's; None is the wire's first
    (Log on v0.4, Host on v0.6). ``description``, ``labels``, ``image``,
    ``max_instances`` and ``delay_release`` (seconds) are v0.6's: a v0.4
    cluster refuses an application that sets them.
    """

    name: str
    shim: Shim | None = attrs.field(default=None, converter=_shim)
    command: str | None = None
    arguments: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    environments: Mapping[str, str] = attrs.field(factory=dict)
    working_directory: str | None = None
    url: str | None = None
    description: str | None = None
    labels: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    image: str | None = None
    max_instances: int | None = None
    delay_release: int | None = None

    def application(self, wire: str = "v0.4", creation_time: int = 0) -> Application:
        """The application to register on a cluster speaking ``wire``."""
        shim = self.shim
        if shim is None:
            shim = Shim.LOG if wire == "v0.4" else Shim.HOST
        return Application(
            name=self.name,
            shim=shim,
            command=self.command,
            arguments=self.arguments,
            environments=tuple(self.environments.items()),
            working_directory=self.working_directory,
            url=self.url,
            description=self.description,
            labels=self.labels,
            image=self.image,
            max_instances=self.max_instances,
            delay_release=self.delay_release,
            creation_time=creation_time,
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
        shim_name = entry.get("shim")
        try:
            shim = None if shim_name is None else Shim.named(str(shim_name))
        except KeyError:
            known = ", ".join(kind.value for kind in Shim)
            raise _bad(
                where, f"application {name!r}: unknown shim {shim_name!r}; one of {known}"
            ) from None
        for key in ("arguments", "labels"):
            values = entry.get(key) or []
            if not isinstance(values, list) or not all(
                isinstance(a, (str, int, float)) for a in values
            ):
                raise _bad(where, f"application {name!r}: `{key}` is a list of strings")
        environments = _environments(entry.get("environments"), f"{where}: application {name!r}")
        for key in ("command", "working_directory", "url", "description", "image"):
            value = entry.get(key)
            if value is not None and not isinstance(value, str):
                raise _bad(where, f"application {name!r}: `{key}` is a string")
        for key in ("max_instances", "delay_release"):
            value = entry.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise _bad(where, f"application {name!r}: `{key}` is a whole number")
        return cls(
            name=name,
            shim=shim,
            command=entry.get("command"),
            arguments=_strings(entry.get("arguments") or []),
            environments=environments,
            working_directory=entry.get("working_directory"),
            url=entry.get("url"),
            description=entry.get("description"),
            labels=_strings(entry.get("labels") or []),
            image=entry.get("image"),
            max_instances=entry.get("max_instances"),
            delay_release=entry.get("delay_release"),
        )

    def attributes(self, wire: str) -> ApplicationAttributes:
        """The :class:`flame.ApplicationAttributes` that register it on a cluster of ``wire``."""
        app = self.application(wire)
        return ApplicationAttributes(
            shim=ClientShim[app.shim.name],
            url=app.url,
            command=app.command,
            arguments=list(app.arguments) or None,
            environments=[f"{key}={value}" for key, value in app.environments] or None,
            working_directory=app.working_directory,
            description=app.description,
            labels=list(app.labels) or None,
            image=app.image,
            max_instances=app.max_instances,
            delay_release=app.delay_release,
        )


def load_applications(path: str | os.PathLike[str]) -> tuple[ApplicationConfig, ...]:
    """The applications a YAML file at ``path`` holds, as ``flame register`` reads them.

    The file is a ``flame-conf.yaml`` (its ``applications`` list is read, its
    other keys are the cluster's and are left alone), or one application's
    mapping (``name``, ``shim``, ``command``, ...). Raises FlameError
    ``INVALID_CONFIG`` saying what is wrong, before anything is registered.
    """
    where = os.fspath(path)
    data = _read_yaml(where)
    if isinstance(data, Mapping) and "applications" not in data and "name" in data:
        return (ApplicationConfig.from_mapping(data, where),)
    if not isinstance(data, Mapping) or "applications" not in data:
        raise _bad(
            where,
            "holds no `applications` list; give a flame-conf.yaml with `applications`, "
            "or one application's mapping (name, shim, command, ...)",
        )
    entries = data["applications"]
    if not isinstance(entries, list) or not entries:
        raise _bad(where, "`applications` is a list of one or more applications")
    return tuple(
        ApplicationConfig.from_mapping(entry, f"{where}: applications[{i}]")
        for i, entry in enumerate(entries)
    )


def _read_yaml(where: str) -> Any:
    """The document in the YAML file ``where``; INVALID_CONFIG if it cannot be read."""
    import yaml

    try:
        with open(where, encoding="utf-8") as file:
            return yaml.safe_load(file)
    except OSError as exc:
        raise _bad(where, f"cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise _bad(where, f"not UTF-8 text: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None)
        if mark is None or problem is None:
            raise _bad(where, f"not valid YAML: {exc}") from None
        raise _bad(
            where, f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
        ) from None


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


def parse_duration(value: Any, where: str) -> float:
    """Seconds, from a number of seconds or a text like ``90s``, ``15m``, ``2h``, ``7d``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise _bad(
                where,
                f"{value!r} is not a duration; give seconds, or like '90s', '15m', '2h', '7d'",
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise _bad(where, f"{value!r}: give a duration above 0")
    return seconds


@attrs.frozen
class TlsConfig:
    """The server's certificate and private key, PEM files: the cluster serves ``https://``.

    ``cert_file`` may hold the chain after the certificate. Paths are
    relative to the current directory unless absolute.
    """

    cert_file: str
    key_file: str

    def __attrs_post_init__(self) -> None:
        for key in ("cert_file", "key_file"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise _bad(f"tls.{key}", "give the path of a PEM file")

    @classmethod
    def from_mapping(cls, data: Any, where: str) -> TlsConfig:
        """Read ``tls`` in ``flame-conf.yaml``: ``{cert_file: ..., key_file: ...}``."""
        if not isinstance(data, Mapping):
            raise _bad(where, "`tls` is a mapping with `cert_file` and `key_file`")
        keys = set(map(str, data))
        if "ca_file" in keys:
            raise _bad(
                where,
                "`tls.ca_file` (client certificates) is not supported by this cluster; "
                "give `cert_file` and `key_file`",
            )
        unknown = sorted(keys - _TLS_KEYS)
        if unknown:
            raise _bad(
                where, f"unknown key(s) {', '.join(unknown)} in `tls`; known: cert_file, key_file"
            )
        missing = sorted(_TLS_KEYS - keys)
        if missing:
            raise _bad(
                where, f"`tls` needs both cert_file and key_file; {', '.join(missing)} is missing"
            )
        return cls(cert_file=str(data["cert_file"]), key_file=str(data["key_file"]))


@attrs.frozen
class RetentionConfig:
    """How long closed sessions (with their tasks) are kept; by default, for ever.

    ``max_age``: seconds after it closed, a session is deleted with its
    tasks. ``max_closed_sessions``: at most this many closed sessions are
    kept, those closed first going first. Open sessions are never touched.
    """

    max_age: float | None = None
    max_closed_sessions: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.max_age is not None and not self.max_age > 0:
            raise _bad("retention.max_age", f"{self.max_age}: give a duration above 0 seconds")
        if self.max_closed_sessions is not None and self.max_closed_sessions < 0:
            raise _bad(
                "retention.max_closed_sessions", f"{self.max_closed_sessions}: give 0 or more"
            )

    @property
    def enabled(self) -> bool:
        return self.max_age is not None or self.max_closed_sessions is not None

    @classmethod
    def from_mapping(cls, data: Any, where: str) -> RetentionConfig:
        """Read ``retention`` in ``flame-conf.yaml``."""
        if not isinstance(data, Mapping):
            raise _bad(
                where, "`retention` is a mapping with `max_age` and/or `max_closed_sessions`"
            )
        unknown = sorted(set(map(str, data)) - _RETENTION_KEYS)
        if unknown:
            raise _bad(
                where,
                f"unknown key(s) {', '.join(unknown)} in `retention`; known: "
                "max_age, max_closed_sessions",
            )
        age = data.get("max_age")
        count = data.get("max_closed_sessions")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise _bad(where, f"`retention.max_closed_sessions` is a number, not {count!r}")
        return cls(
            max_age=None if age is None else parse_duration(age, f"{where}: retention.max_age"),
            max_closed_sessions=count,
        )


def _check_token(token: str, where: str) -> None:
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        raise _bad(
            where,
            "the token must be printable ASCII without spaces (it is sent in an HTTP header); "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )


def token_from_env() -> str | None:
    """The token in ``FLAME_AUTH_TOKEN``, or None when it is unset or empty."""
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    return token or None


@attrs.frozen
class ClusterConfig:
    """How an embedded cluster runs.

    ``wire`` is the Flame wire it speaks, as one Flame cluster speaks one:
    ``"v0.4"`` (the default; the Log, Stdio, Shell and Grpc shims) or
    ``"v0.6"`` (``flame.v1``; Host applications through v0.6's service
    contract). ``endpoint`` None means 127.0.0.1 on a free port. ``slots`` is the
    executor capacity (a session asks for some slots per executor).
    ``storage`` is ``mem`` (nothing is kept when the cluster stops) or
    ``sqlite://<path>``: a database file, created if missing, relative to the
    current directory unless absolute (``sqlite:///var/lib/flame.db``).

    ``tls`` makes the cluster serve ``https://`` with that certificate.
    ``auth_token`` is the shared secret every call must present (``authorization:
    Bearer <token>``); calls without it are refused UNAUTHENTICATED.
    ``retention`` prunes closed sessions.

    ``max_message_bytes`` is the largest request message the cluster reads
    (a larger one is refused from its length prefix, unread), and so the
    largest task input or common data; a task's output is held to it too,
    so that a task can always be read back whole (see
    ``flame._transport.reply_limit``). ``idle_timeout`` (seconds, None:
    never) closes connections with no call in flight; ``max_connections``
    caps how many are held (None: 1,024, or half the files the process may
    open if fewer).
    """

    name: str = "flame"
    endpoint: str | None = None
    slots: int = attrs.field(factory=_default_slots)
    slot: str = "cpu=1,mem=2g"
    policy: str = "proportion"
    storage: str = "mem"
    applications: tuple[ApplicationConfig, ...] = attrs.field(default=(), converter=tuple)
    max_message_bytes: int = MAX_MESSAGE_BYTES
    tls: TlsConfig | None = None
    auth_token: str | None = attrs.field(default=None, repr=False)
    retention: RetentionConfig = attrs.field(factory=RetentionConfig)
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    max_connections: int | None = None
    wire: str = WIRES[0]

    def __attrs_post_init__(self) -> None:
        if self.wire not in WIRES:
            raise _bad(
                "wire",
                f"{self.wire!r}: the embedded cluster speaks {' and '.join(WIRES)}; "
                "give one of them",
            )
        if self.slots < 1:
            raise _bad("slots", f"{self.slots} executor slots; give 1 or more")
        check_message_limit(
            self.max_message_bytes, "max_message_bytes", FlameErrorCode.INVALID_CONFIG
        )
        _ = self.server_limits  # checks idle_timeout and max_connections
        if self.policy != "proportion":
            raise _bad("policy", f"{self.policy!r}: this cluster schedules by 'proportion' only")
        if not _SLOT.match(self.slot):
            raise _bad("slot", f"{self.slot!r} is not like 'cpu=1,mem=2g'")
        if self.storage != "mem":
            _sqlite_path(self.storage)
        if self.endpoint is not None:
            endpoint = Endpoint.parse(self.endpoint)
            if endpoint.tls and self.tls is None:
                raise _bad(
                    "endpoint",
                    f"{self.endpoint!r}: to serve https, give `tls` with cert_file and key_file",
                )
        if self.auth_token is not None:
            _check_token(self.auth_token, "auth_token")
        names = [app.name for app in self.applications]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise _bad("applications", f"listed more than once: {', '.join(duplicates)}")

    @property
    def server_limits(self) -> ServerLimits:
        """What the server accepts: the message size, idle time and connection cap."""
        return ServerLimits(
            max_message_bytes=self.max_message_bytes,
            idle_timeout=self.idle_timeout,
            max_connections=self.max_connections,
        )

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
        where = os.fspath(path)
        return cls.from_mapping(_read_yaml(where) or {}, where, **overrides)

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
        for key in ("name", "endpoint", "slot", "policy", "storage", "wire"):
            if data.get(key) is not None:
                values[key] = str(data[key])
        if data.get("tls") is not None:
            values["tls"] = TlsConfig.from_mapping(data["tls"], where)
        if data.get("retention") is not None:
            values["retention"] = RetentionConfig.from_mapping(data["retention"], where)
        for key in ("max_message_bytes", "max_connections"):
            number = data.get(key)
            if number is not None:
                if isinstance(number, bool) or not isinstance(number, int):
                    raise _bad(where, f"`{key}` is a whole number, not {number!r}")
                values[key] = number
        if "idle_timeout" in data:
            idle = data["idle_timeout"]
            values["idle_timeout"] = (
                None if idle is None else parse_duration(idle, f"{where}: idle_timeout")
            )
        token = data.get("auth_token")
        if token is not None and not isinstance(token, str):
            raise _bad(where, "`auth_token` is a string; quote it")
        values["auth_token"] = token or token_from_env()
        values["applications"] = tuple(
            ApplicationConfig.from_mapping(entry, f"{where}: applications[{i}]")
            for i, entry in enumerate(entries)
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
