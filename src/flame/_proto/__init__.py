"""Code generated from ``proto/`` by betterproto2; nothing below this file is edited by hand.

Each Flame wire has its own root, generated from ``proto/<wire>/`` by
``nox -s proto``: ``v04`` (package ``flame``, Flame v0.4), ``v05`` (package
``flame``, Flame v0.5) and ``v06`` (package ``flame.v1``, Flame v0.6). v0.4 and
v0.5 share a protobuf package name but not its contents, so each root keeps
its own message pool::

    from flame._proto.v04 import flame as pb  # v0.4
    from flame._proto.v05 import flame as pb  # v0.5
    from flame._proto.v06.flame import v1 as pb  # v0.6
"""
