"""Write a Flame service in Python.

A service is a program that an executor starts and calls: once when it is
bound to a session, once per task, and once when the session is over.
Subclass :class:`FlameService`, and hand an instance to :func:`run`::

    from flame.service import FlameService, TaskContext, run

    class Echo(FlameService):
        def on_task_invoke(self, ctx: TaskContext) -> bytes | None:
            return ctx.input

    if __name__ == "__main__":
        run(Echo())

Register the program as an application (``command`` the Python
interpreter, ``arguments`` the script; shim Grpc on Flame v0.4 and
``flame local``, Host on v0.5 and v0.6), create a session of it, and its
tasks run here. The same program serves every Flame version: the
environment the executor starts it with says which contract it speaks,
and :func:`run` serves that one. Handlers may be plain methods, which run
in a worker thread, or ``async def`` ones, which run on the event loop:
asyncio by default, trio with ``run(service, backend="trio")``. Under an
event loop of your own, ``await serve(service)`` does the same as
:func:`run`.

The package, by concern:

``_runtime``
    :class:`FlameService`, :func:`serve` and :func:`run`: calling the
    handlers one at a time, signals, stopping gracefully.
``_contracts``
    one module per contract an executor speaks (v0.4's Grpc shim; v0.5's
    and v0.6's Instance), and how the environment picks one.
``_types``
    what the handlers receive and return, the same on every contract.
``_instance_client``
    the executor's side of the Instance contract, for an executor (and the
    tests) to call a service with.
"""

from ._runtime import FlameService, run, serve
from ._types import ApplicationContext, SessionContext, TaskContext, TaskOutput

__all__ = [
    "ApplicationContext",
    "FlameService",
    "SessionContext",
    "TaskContext",
    "TaskOutput",
    "run",
    "serve",
]
