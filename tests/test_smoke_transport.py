"""The transport carries a unary call and a server stream on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

from flame._proto import flame as pb
from flame._transport import Channel, open_grpc_loop, serve


class _Frontend(pb.FrontendBase):
    async def get_task(self, message: pb.GetTaskRequest) -> pb.Task:
        return pb.Task(metadata=pb.Metadata(id=message.task_id), spec=pb.TaskSpec(session_id=message.session_id))

    async def watch_task(self, message: pb.WatchTaskRequest) -> AsyncIterator[pb.Task]:
        for state in (pb.TaskState.Pending, pb.TaskState.Running, pb.TaskState.Succeed):
            yield pb.Task(metadata=pb.Metadata(id=message.task_id), status=pb.TaskStatus(state=state))


async def test_unary_and_stream_round_trip() -> None:
    loop = open_grpc_loop()
    try:
        async with serve(loop, [_Frontend()]) as server:
            async with await Channel.connect(server.address) as channel:
                stub = pb.FrontendStub(channel.grpc)
                task = await channel.unary(stub.get_task, pb.GetTaskRequest(task_id="7", session_id="3"))
                assert (task.metadata.id, task.spec.session_id) == ("7", "3")
                async with channel.stream(stub.watch_task, pb.WatchTaskRequest(task_id="7")) as updates:
                    states = [update.status.state async for update in updates]
                assert states == [pb.TaskState.Pending, pb.TaskState.Running, pb.TaskState.Succeed]
    finally:
        await loop.aclose()
