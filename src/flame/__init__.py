"""Flame: run very many short tasks over a cluster, from asyncio or trio.

Connect, open a session of a registered application, and run tasks in it::

    import flame

    async def main() -> None:
        async with await flame.connect("http://127.0.0.1:8080") as conn:
            attrs = flame.SessionAttributes(application="my-app", slots=1)
            async with await conn.create_session(attrs) as session:
                task = await session.run_task(b"echo hello")
                print(task.output)

The same code runs under ``asyncio.run(main())`` and ``trio.run(main)``, and
against a cluster of any Flame wire the SDK speaks (:data:`WIRES`: v0.4,
v0.5, v0.6), found when connecting (``conn.wire``) unless named.

Where things are: the public client in ``_connection`` (applications,
sessions, the cluster), ``_session`` (tasks), ``_fanout`` (many tasks) and
``_progress`` (how a run of many tasks is shown going);
the neutral types in ``_types``; each wire's codec in ``_wires``; the
configuration in ``_config``; gRPC in ``_transport``.
"""

from ._connection import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    Connection,
    connect,
)
from ._errors import FlameError, FlameErrorCode
from ._fanout import DEFAULT_CONCURRENCY, FinishedTasks, TaskFailure, TaskFailures
from ._informer import TaskInformer
from ._progress import Progress, ProgressOption, TaskCounts
from ._session import Session, SessionClient, TaskWatcher
from ._transport import Keepalive, RetryPolicy
from ._types import (
    DEFAULT_CONTEXT_NAME,
    DEFAULT_FLAME_CONF,
    DEFAULT_FLAME_ENDPOINT,
    FINAL_TASK_STATES,
    Application,
    ApplicationAttributes,
    ApplicationID,
    ApplicationSchema,
    ApplicationState,
    CommonData,
    Event,
    Executor,
    ExecutorState,
    Message,
    Node,
    NodeState,
    ResourceRequirement,
    SessionAttributes,
    SessionID,
    SessionState,
    Shim,
    Task,
    TaskID,
    TaskInput,
    TaskOutput,
    TaskState,
)
from ._wires import WIRES

__all__ = [
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
