"""An embedded Flame cluster: everything a Flame client needs, in one process.

::

    from flame.local import ApplicationConfig, LocalCluster

    async with LocalCluster(applications=[ApplicationConfig("ping")]) as cluster:
        print(cluster.endpoint)  # http://127.0.0.1:<port>

It behaves like a Flame v0.4 session manager, with more precise error
statuses and the calls v0.4 leaves out. ``flame local`` runs the same cluster
from the command line.
"""

from __future__ import annotations

from ._cluster import LocalCluster
from ._config import ApplicationConfig, ClusterConfig, RetentionConfig, TlsConfig

__all__ = ["ApplicationConfig", "ClusterConfig", "LocalCluster", "RetentionConfig", "TlsConfig"]
