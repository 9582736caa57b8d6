"""The blocking API: the async API of :mod:`flame`, with no ``await``.

For scripts, notebooks and any code that is not async. The names, arguments,
checks, errors and behaviour are those of :mod:`flame`; only the ``await``
and the ``async`` of ``async with`` / ``async for`` go::

    import flame
    import flame.sync

    with flame.sync.connect("http://127.0.0.1:8080") as conn:
        conn.register_application("shell", {"shim": flame.Shim.SHELL})
        attrs = flame.SessionAttributes(application="shell", slots=1)
        with conn.create_session(attrs) as session:
            print(session.run_task(b"echo hello").output)
            for task in session.run_tasks([b"echo 1", b"echo 2"]):
                print(task.output)
            with session.as_completed(b"echo %d" % i for i in range(100)) as finished:
                for task in finished:
                    print(task.id, task.output)

``conn.function_session(fn)`` gives a blocking function session (``f(x)``,
``f.map(inputs)``, ``with f.as_completed(inputs) as results``).

Every name of :mod:`flame` is here too (``import flame.sync as flame``
makes an async program blocking once the ``await`` are gone): the blocking
:func:`connect`, :class:`Connection`, :class:`SessionClient`,
:class:`Session`, :class:`TaskWatcher` and :class:`FinishedTasks`, and the
very same types, constants and errors as :mod:`flame` (a
:class:`FlameError` raised here is the one the async API raised, with the
same code).

How it works
------------

It is one thin layer over the async API, not a second client. Each
:class:`Connection` runs a :class:`flame.Connection` on an event loop of its
own, on a daemon thread of its own; every blocking call runs the async
method there and waits for it. So:

* It works where an event loop already runs in the calling thread (Jupyter,
  or a blocking call made from async code, which it blocks).
* Any number of threads may share one connection; a call blocks only the
  thread that made it.
* :meth:`Connection.close` (or leaving its ``with``) closes the connection
  and ends the thread; a connection dropped unclosed is closed, and its
  thread ended, when it is garbage collected.
* The loop is asyncio unless ``connect(..., backend="trio")`` says
  otherwise (trio must be installed); ``backend_options`` are anyio's,
  e.g. ``{"use_uvloop": True}``.

User code runs in the calling thread
------------------------------------

An iterable of inputs (a generator, say; a list or tuple is simply read)
and the methods of an informer, given to :meth:`SessionClient.run_tasks`,
:meth:`SessionClient.as_completed` or :meth:`SessionClient.run_task`, run
in the thread that made the call, never on the connection's loop: inputs
are read one at a time, when a task needs one, exactly as lazily as the
async API reads them. A slow generator then holds back only its own run,
objects bound to a thread keep working, and an exception it raises is
handled as the async API handles it. They run while that thread is inside
the call: for ``as_completed``, inside ``next`` (and entering or leaving
the ``with``), so a body that takes long keeps at most one task's place
idle meanwhile. An informer method that is ``async def`` is awaited on the
connection's loop.

Ctrl-C
------

A KeyboardInterrupt in the calling thread during a blocking call (Ctrl-C,
or raised by its generator of inputs or its informer) cancels the async
call: its tasks in flight are cancelled and their watches closed, as
cancelling the async call does. Once that is done, the KeyboardInterrupt
is raised, and the connection is as usable as before. (Tasks already
created on the cluster run to their end there.) A second Ctrl-C while the
call is being cancelled is raised at once.

Iterators
---------

``watch_task`` gives a :class:`TaskWatcher`, ``as_completed`` a context
manager whose ``with`` gives :class:`FinishedTasks`: plain iterators. A
watcher closes its stream at its end, on ``close()``, when
its ``with`` is left, or when it is dropped (``break``); leaving the
``with`` of ``as_completed`` cancels what is in flight, and so does
dropping it unleft. Dropping closes them without waiting and without
starting any new work.

Layout
------

``_portal``: the event loop's thread and the work handed to it.
``_caller``: the calling thread's side (waiting, Ctrl-C, user code).
``_pump``: an async iterator pulled from a thread. ``_connection``,
``_session``, ``_iterators`` and ``_functions``: the blocking classes, one
method per async method, each a call to it through the portal.
"""

# The async API's own objects: these are not wrapped, only re-exported.
from .. import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_CONCURRENCY,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_CONTEXT_NAME,
    DEFAULT_FLAME_CONF,
    DEFAULT_FLAME_ENDPOINT,
    FINAL_TASK_STATES,
    WIRES,
    Application,
    ApplicationAttributes,
    ApplicationID,
    ApplicationSchema,
    ApplicationState,
    CommonData,
    Event,
    Executor,
    ExecutorState,
    FlameError,
    FlameErrorCode,
    Keepalive,
    Message,
    Node,
    NodeState,
    Progress,
    ProgressOption,
    ResourceRequirement,
    RetryPolicy,
    SessionAttributes,
    SessionID,
    SessionState,
    Shim,
    Task,
    TaskCounts,
    TaskFailure,
    TaskFailures,
    TaskID,
    TaskInformer,
    TaskInput,
    TaskOutput,
    TaskState,
)
from ._connection import Connection, connect
from ._iterators import FinishedTasks, TaskWatcher
from ._portal import BACKENDS
from ._session import Session, SessionClient

__all__ = [
    "BACKENDS",
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_CONTEXT_NAME",
    "DEFAULT_FLAME_CONF",
    "DEFAULT_FLAME_ENDPOINT",
    "FINAL_TASK_STATES",
    "WIRES",
    "Application",
    "ApplicationAttributes",
    "ApplicationID",
    "ApplicationSchema",
    "ApplicationState",
    "CommonData",
    "Connection",
    "Event",
    "Executor",
    "ExecutorState",
    "FinishedTasks",
    "FlameError",
    "FlameErrorCode",
    "Keepalive",
    "Message",
    "Node",
    "NodeState",
    "Progress",
    "ProgressOption",
    "ResourceRequirement",
    "RetryPolicy",
    "Session",
    "SessionAttributes",
    "SessionClient",
    "SessionID",
    "SessionState",
    "Shim",
    "Task",
    "TaskCounts",
    "TaskFailure",
    "TaskFailures",
    "TaskID",
    "TaskInformer",
    "TaskInput",
    "TaskOutput",
    "TaskState",
    "TaskWatcher",
    "connect",
]
