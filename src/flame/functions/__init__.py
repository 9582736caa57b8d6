"""Python functions as Flame tasks: no service to write, Python values in and out.

Open a function session on a connection, then call the function, or map it
over many inputs; each call is one task::

    def square(x: int) -> int:
        return x * x

    async with await conn.function_session(square) as f:
        print(await f(3))                           # 9
        print(await f.map(range(10), concurrency=4))

The layout:

- ``_client``: :class:`FunctionSession` and :func:`open_function_session`,
  the client side, built on :class:`flame.Session`'s ``run_task`` and
  ``as_completed``;
- ``_service``: :class:`FunctionService`, the generic
  :class:`flame.service.FlameService` that calls the function in the
  executor (``python -m flame.functions`` runs it);
- ``_envelope``: the bytes the two exchange (the function in the session's
  common data, a call per task input, a reply per task output);
- ``_pickling``: cloudpickle, with errors that say which object could not be
  pickled.

``docs/functions.md`` explains the choices: why a call that raised is a task
that succeeded, how versions are checked, what the probe costs.
"""

from ._client import (
    DEFAULT_APPLICATION,
    SERVICE_ARGUMENTS,
    FunctionResults,
    FunctionSession,
    open_function_session,
)
from ._service import FunctionService

__all__ = [
    "DEFAULT_APPLICATION",
    "SERVICE_ARGUMENTS",
    "FunctionResults",
    "FunctionService",
    "FunctionSession",
    "open_function_session",
]
