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

Register the program as an application with the Grpc shim (``command`` the
Python interpreter, ``arguments`` the script), create a session of it, and
its tasks run here. Handlers may be plain methods, which run in a worker
thread, or ``async def`` ones, which run on the event loop: asyncio by
default, trio with ``run(service, backend="trio")``. Under an event loop of
your own, ``await serve(service)`` does the same as :func:`run`.
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
