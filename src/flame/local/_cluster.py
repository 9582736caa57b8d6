"""LocalCluster: a whole Flame cluster inside this process.

The cluster (session manager, scheduler, executors, shims and the gRPC server)
is one anyio function, :func:`_run_cluster`, that runs where grpclib runs: on
the caller's loop under asyncio, on the transport's private asyncio loop under
trio. :class:`LocalCluster` starts it on entering and stops it on leaving, from
either backend.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import attrs

from .._errors import FlameError, FlameErrorCode
from .._transport import open_grpc_loop, serve
from ._config import ApplicationConfig, ClusterConfig, RetentionConfig
from ._executors import Contract, ExecutorPool
from ._model import now_ms
from ._security import exposure, server_security
from ._sessions import SessionManager
from ._sqlite import SqliteStorage
from ._storage import MemoryStorage, Storage
from .frontend import frontend, registrable

__all__ = ["LocalCluster"]

log = logging.getLogger("flame.local")


def _make_storage(config: ClusterConfig) -> Storage:
    path = config.storage_path
    if path is None:
        return MemoryStorage()
    storage = SqliteStorage(path, wire=config.wire)
    log.info("keeping state in %s", os.path.abspath(path))
    return storage


def _checked(config: ClusterConfig) -> None:
    """Refuse a config whose applications its wire cannot express or this cluster run."""
    problems = []
    for app in config.applications:
        problem = registrable(config.wire, app.application(config.wire))
        if isinstance(problem, str):
            problems.append(problem)
    if problems:
        raise FlameError(
            FlameErrorCode.INVALID_CONFIG,
            f"cannot register, on {config.wire}: " + "; ".join(problems),
        )


def _register(manager: SessionManager, app: ApplicationConfig, wire: str) -> None:
    """Register an application of the config; one the store already holds is updated to it."""
    wanted = registrable(wire, app.application(wire, now_ms()))
    assert not isinstance(wanted, str)  # _checked said so
    known = manager.application(app.name)
    if known is not None:
        # The config says what the application is now; sessions created with
        # the stored one keep it.
        wanted = attrs.evolve(wanted, creation_time=known.creation_time, state=known.state)
    if wanted != known:
        manager.save_application(wanted)


#: How many closed sessions one round of pruning deletes at most; the next
#: round follows at once while there are more.
_PRUNE_BATCH = 100


async def _prune(manager: SessionManager, retention: RetentionConfig) -> None:
    """Delete closed sessions as ``retention`` says, until cancelled."""
    period = 1.0
    if retention.max_age is not None:
        # Often enough that a session goes within a tenth of its age limit.
        period = min(period, max(retention.max_age / 10, 0.05))
    while True:
        pruned = manager.prune(
            time.time(),
            max_age=retention.max_age,
            max_closed=retention.max_closed_sessions,
            limit=_PRUNE_BATCH,
        )
        await anyio.sleep(0 if pruned >= _PRUNE_BATCH else period)


async def _run_cluster(
    config: ClusterConfig,
    *,
    task_status: anyio.abc.TaskStatus[tuple[str, SessionManager]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run the cluster until cancelled.

    ``task_status`` gets its endpoint and its session manager once it serves.
    """
    _checked(config)
    security = server_security(config)
    pool = ExecutorPool(config.slots, Contract(config.wire))
    storage = _make_storage(config)
    try:
        manager = SessionManager(
            storage,
            capacity=config.slots,
            max_message_bytes=config.max_message_bytes,
            listener=pool,
        )
    except BaseException:
        storage.close()
        raise
    pool.attach(manager)
    # Sockets and working directories of the services, this cluster's alone.
    runtime = tempfile.TemporaryDirectory(prefix="flame-")
    pool.runtime_dir = runtime.name
    try:
        for app in config.applications:
            _register(manager, app, config.wire)
        # We are on asyncio here, whatever the caller runs: this loop is the caller's.
        loop = open_grpc_loop()
        service = frontend(config.wire, manager, pool)
        async with (
            serve(
                loop,
                [service],
                host=config.host,
                port=config.port,
                ssl=security.ssl,
                limits=config.server_limits,
                auth_token=security.auth_token,
            ) as server,
            anyio.create_task_group() as tg,
        ):
            pool.task_group = tg
            pool.endpoint = str(server.address)
            if isinstance(storage, SqliteStorage):
                tg.start_soon(storage.write_behind, name="flame storage writer")
            if config.retention.enabled:
                tg.start_soon(_prune, manager, config.retention, name="flame retention")
            manager.resume()
            log.info(
                "cluster %r serving Flame %s on %s with %d executor slot(s)",
                config.name,
                config.wire,
                server.address,
                config.slots,
            )
            warning = exposure(config)
            if warning is not None:
                log.warning("%s", warning)
            task_status.started((str(server.address), manager))
            try:
                await anyio.sleep_forever()
            finally:
                # Before the executors stop: what they were running stays
                # Running in the store, to run again at the next start.
                manager.stop()
                tg.cancel_scope.cancel()
    finally:
        manager.stop()
        runtime.cleanup()
        log.info("cluster %r stopped", config.name)


async def _stop(manager: SessionManager) -> None:
    # Before the cluster is cancelled: cancelling also stops the server,
    # whose calls, watches included, would end without a word to the client.
    manager.stop()
    await manager.watches_ended()


class LocalCluster:
    """A Flame cluster on this machine, for the ``async with``.

    ::

        async with LocalCluster(applications=[ApplicationConfig("ping")]) as cluster:
            ...  # connect to cluster.endpoint

    It serves the ``Frontend`` service of its wire (``wire="v0.4"``, the
    default, or ``"v0.6"``) on 127.0.0.1 (a free port unless the config names
    one), runs ``slots`` executor slots (default: the number of CPUs), and
    registers the config's applications before it answers. Leaving
    the ``async with`` stops the server, the executors and every child process
    they started. Works under asyncio and under trio. With ``tls`` in the
    config it serves ``https://``.

    With ``sqlite://<path>`` storage the state is kept in that file, and a
    cluster started on it again carries on: tasks that were running when it
    stopped run again. The file is locked while the cluster runs, and closed
    when it stops.
    """

    def __init__(
        self,
        config: ClusterConfig | None = None,
        *,
        slots: int | None = None,
        endpoint: str | None = None,
        applications: Iterable[ApplicationConfig] | None = None,
        wire: str | None = None,
    ) -> None:
        config = config if config is not None else ClusterConfig()
        changes: dict[str, Any] = {}
        if wire is not None:
            changes["wire"] = wire
        if slots is not None:
            changes["slots"] = slots
        if endpoint is not None:
            changes["endpoint"] = endpoint
        if applications is not None:
            changes["applications"] = tuple(config.applications) + tuple(applications)
        self.config = attrs.evolve(config, **changes) if changes else config
        self._endpoint: str | None = None
        self._manager: SessionManager | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._stop: Callable[[], Awaitable[None]] | None = None

    def _running(self) -> SessionManager:
        if self._manager is None:
            raise FlameError(
                FlameErrorCode.INVALID_STATE,
                "the cluster is not running; use it inside `async with LocalCluster() as cluster`",
            )
        return self._manager

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>`` (``https://`` with TLS), where the cluster serves."""
        self._running()
        assert self._endpoint is not None
        return self._endpoint

    @property
    def storage_problem(self) -> str | None:
        """Why the cluster cannot commit its state now (calls wait meanwhile), or None."""
        return self._running().storage.problem

    async def __aenter__(self) -> LocalCluster:
        if self._stack is not None:
            raise FlameError(FlameErrorCode.INVALID_STATE, "this LocalCluster is already running")
        stack = contextlib.AsyncExitStack()
        try:
            loop = open_grpc_loop()
            stack.push_async_callback(loop.aclose)
            endpoint, manager = await stack.enter_async_context(
                loop.background(_run_cluster, self.config)
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            raise
        self._stack = stack
        self._endpoint = endpoint
        self._manager = manager
        self._stop = functools.partial(loop.run, _stop, manager)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        stop, self._stop = self._stop, None
        self._endpoint = None
        self._manager = None
        if stack is None:
            return None
        if stop is not None:
            with anyio.CancelScope(shield=True):
                await stop()
        return await stack.__aexit__(exc_type, exc, tb)
