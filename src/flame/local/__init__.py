"""An embedded Flame cluster: everything a Flame client needs, in one process.

::

    from flame.local import ApplicationConfig, LocalCluster

    async with LocalCluster(applications=[ApplicationConfig("ping")]) as cluster:
        print(cluster.endpoint)  # http://127.0.0.1:<port>

It speaks one Flame wire, chosen when it starts: v0.4 (the default; a v0.4
session manager with more precise error statuses and the calls v0.4 leaves
out, running Log, Stdio, Shell and Grpc applications) or v0.6
(``LocalCluster(wire="v0.6")``: a v0.6 session manager, running Host
applications through v0.6's service contract). ``flame local`` runs the same
cluster from the command line.

The layout, from the wire in:

``frontend/``
    the ``Frontend`` service, one module per wire: its rules and messages.
``_model``
    the cluster's own records of applications, sessions and tasks.
``_sessions``
    the session manager: what keeps the records consistent, and watches.
``_scheduler``, ``_executors``
    who gets the executor slots; the executors binding to sessions and
    running their tasks, by each wire's executor contract.
``shims/``
    how an executor runs an application: Log, Stdio, Shell, Grpc (v0.4),
    Host (v0.6).
``_storage``, ``_sqlite``, ``_rows``, ``_migration``
    where the records are kept: in memory, or committed to a SQLite file.
``_config``, ``_cluster``, ``_command``, ``_security``
    the configuration, the cluster that puts it all together, ``flame
    local``, and TLS.
"""

from __future__ import annotations

from ._cluster import LocalCluster
from ._config import ApplicationConfig, ClusterConfig, RetentionConfig, TlsConfig

__all__ = ["ApplicationConfig", "ClusterConfig", "LocalCluster", "RetentionConfig", "TlsConfig"]
