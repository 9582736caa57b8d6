"""LocalCluster: a whole Flame cluster inside this process.

The cluster (session manager, scheduler, executors, shims and the gRPC server)
is one anyio function, :func:`_run_cluster`, that runs where grpclib runs: on
the caller's loop under asyncio, on the transport's private asyncio loop under
trio. :class:`LocalCluster` starts it on entering and stops it on leaving, from
either backend.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import attrs

from .._errors import FlameError, FlameErrorCode
from .._transport import open_grpc_loop, serve
from ._config import ApplicationConfig, ClusterConfig
from ._executors import ExecutorPool
from ._frontend import Frontend
from ._sessions import SessionManager
from ._storage import MemoryStorage, Storage

__all__ = ["LocalCluster"]

log = logging.getLogger("flame.local")


def _make_storage(config: ClusterConfig) -> Storage:
    if config.storage != "mem":
        log.warning(
            "storage %r: this embedded cluster keeps its state in memory; it is gone when "
            "the cluster stops",
            config.storage,
        )
    return MemoryStorage()


async def _run_cluster(
    config: ClusterConfig, *, task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Run the cluster until cancelled; ``task_status`` gets its endpoint once it serves."""
    pool = ExecutorPool(config.slots)
    manager = SessionManager(
        _make_storage(config),
        capacity=config.slots,
        max_message_bytes=config.max_message_bytes,
        listener=pool,
    )
    pool.attach(manager)
    for app in config.applications:
        problem = manager.register_application(app.name, app.spec())
        if problem is not None:
            raise FlameError(FlameErrorCode.INVALID_CONFIG, f"cannot register: {problem}")
    # We are on asyncio here, whatever the caller runs: this loop is the caller's.
    loop = open_grpc_loop()
    try:
        async with (
            serve(loop, [Frontend(manager)], host=config.host, port=config.port) as server,
            anyio.create_task_group() as tg,
        ):
            pool.task_group = tg
            log.info(
                "cluster %r serving on %s with %d executor slot(s)",
                config.name,
                server.address,
                config.slots,
            )
            task_status.started(server.address)
            try:
                await anyio.sleep_forever()
            finally:
                tg.cancel_scope.cancel()
    finally:
        log.info("cluster %r stopped", config.name)


class LocalCluster:
    """A Flame cluster on this machine, for the ``async with``.

    ::

        async with LocalCluster(applications=[ApplicationConfig("ping")]) as cluster:
            ...  # connect to cluster.endpoint

    It serves the ``Frontend`` service on 127.0.0.1 (a free port unless the
    config names one), runs ``slots`` executor slots (default: the number of
    CPUs), and registers the config's applications before it answers. Leaving
    the ``async with`` stops the server, the executors and every child process
    they started. Works under asyncio and under trio.
    """

    def __init__(
        self,
        config: ClusterConfig | None = None,
        *,
        slots: int | None = None,
        endpoint: str | None = None,
        applications: Iterable[ApplicationConfig] | None = None,
    ) -> None:
        config = config if config is not None else ClusterConfig()
        changes: dict[str, Any] = {}
        if slots is not None:
            changes["slots"] = slots
        if endpoint is not None:
            changes["endpoint"] = endpoint
        if applications is not None:
            changes["applications"] = tuple(config.applications) + tuple(applications)
        self.config = attrs.evolve(config, **changes) if changes else config
        self._endpoint: str | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``, where the cluster serves."""
        if self._endpoint is None:
            raise FlameError(
                FlameErrorCode.INVALID_STATE,
                "the cluster is not running; use it inside `async with LocalCluster() as cluster`",
            )
        return self._endpoint

    async def __aenter__(self) -> LocalCluster:
        if self._stack is not None:
            raise FlameError(FlameErrorCode.INVALID_STATE, "this LocalCluster is already running")
        stack = contextlib.AsyncExitStack()
        try:
            loop = open_grpc_loop()
            stack.push_async_callback(loop.aclose)
            endpoint = await stack.enter_async_context(loop.background(_run_cluster, self.config))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            raise
        self._stack = stack
        self._endpoint = str(endpoint)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        self._endpoint = None
        if stack is None:
            return None
        return await stack.__aexit__(exc_type, exc, tb)
