"""Fixtures for the embedded cluster: a running LocalCluster and a raw client."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from flame._errors import FlameError
from flame._proto.v04 import flame as pb
from flame._transport import Channel
from flame.local import ApplicationConfig, LocalCluster


class Client:
    """The generated stubs over our transport, with a few shortcuts for tests."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.stub = pb.FrontendStub(channel)

    async def call(self, method: str, request: Any) -> Any:
        return await self.channel.unary(getattr(self.stub, method), request)

    async def refused(self, method: str, request: Any, status: str, *words: str) -> FlameError:
        """Call ``method``, which must fail with gRPC ``status`` and a message with ``words``."""
        with pytest.raises(FlameError) as info:
            if method == "watch_task":
                await self.watch_request(request)
            else:
                await self.call(method, request)
        error = info.value
        assert f": {status}: " in error.message, error.message
        for word in words:
            assert word in error.message, (word, error.message)
        return error

    async def watch(self, session_id: str, task_id: str) -> list[pb.Task]:
        return await self.watch_request(pb.WatchTaskRequest(task_id=task_id, session_id=session_id))

    async def watch_request(self, request: Any) -> list[pb.Task]:
        async with self.channel.stream(self.stub.watch_task, request) as updates:
            return [update async for update in updates]

    async def register(self, name: str, spec: pb.ApplicationSpec) -> pb.Result:
        return await self.call(
            "register_application", pb.RegisterApplicationRequest(name=name, application=spec)
        )

    async def session(self, application: str = "ping", slots: int = 1) -> str:
        created = await self.call(
            "create_session",
            pb.CreateSessionRequest(session=pb.SessionSpec(application=application, slots=slots)),
        )
        return str(created.metadata.id)

    async def task(self, session_id: str, data: bytes | None = b"") -> str:
        created = await self.call(
            "create_task", pb.CreateTaskRequest(task=pb.TaskSpec(session_id=session_id, input=data))
        )
        return str(created.metadata.id)

    async def run(self, session_id: str, data: bytes | None = b"") -> pb.Task:
        """Create a task and watch it to its end; the last message."""
        updates = await self.watch(session_id, await self.task(session_id, data))
        return updates[-1]

    async def counters(self, session_id: str) -> tuple[int, int, int, int]:
        session = await self.call("get_session", pb.GetSessionRequest(session_id=session_id))
        s = session.status
        return (s.pending, s.running, s.succeed, s.failed)


@pytest.fixture
async def cluster(anyio_backend: str) -> AsyncIterator[LocalCluster]:
    async with LocalCluster(slots=2, applications=[ApplicationConfig("ping")]) as running:
        yield running


@pytest.fixture
async def client(cluster: LocalCluster) -> AsyncIterator[Client]:
    async with await Channel.connect(cluster.endpoint) as channel:
        yield Client(channel)


async def wait_until(check: Callable[[], Awaitable[bool] | bool], limit: float = 20) -> None:
    """Poll what no event tells us about (a file, another process) until ``check`` holds."""
    with anyio.fail_after(limit):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await anyio.sleep(0.02)


_raw_types: dict[type, type] = {}


def raw(cls: type, data: bytes) -> Any:
    """A request of ``cls`` that is sent as ``data``, whatever those bytes are."""
    sub = _raw_types.get(cls)
    if sub is None:

        def encode(self: Any) -> bytes:
            return self.__dict__["_raw"]

        sub = type(f"Raw{cls.__name__}", (cls,), {"SerializeToString": encode, "__bytes__": encode})
        _raw_types[cls] = sub
    message = sub()
    message.__dict__["_raw"] = data
    return message
