"""What the transport costs: our client connection against grpclib's and grpcio's, over loopback.

Client and server live in one process and talk over 127.0.0.1. For each of

* ``stub/asyncio`` and ``stub/trio``: the generated stubs over our channel
  (``pb.FrontendStub(channel)``), the way the client makes its occasional
  calls, under each backend;
* ``lean/asyncio`` and ``lean/trio``: the calls made once per task, with an
  encoded request and the hand-written codec (``Channel.call`` and
  ``Channel.open_stream`` with ``flame._wire``);
* ``grpclib``: grpclib's own client channel under the same generated stubs
  (asyncio only), the client the SDK used before;

all against our server (grpclib, as the embedded cluster serves; under trio
on its loop thread), and

* ``grpcio``: ``grpc.aio`` server and client, from stubs that ``grpc_tools``
  generates at run time from the same ``proto/v0.4/`` files;

it measures a GetTask-like unary call (Frontend service) one at a time,
without and with a deadline (60 s, sent to the server as ``grpc-timeout``),
and with 64 in flight, and a WatchTask-like server stream of many messages;
then prints a table and the ratios to grpcio.

    pip install -e '.[test]'
    python benchmarks/transport.py              # about 30 s
    python benchmarks/transport.py --seconds 1  # a quick look

It is a script, not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

from flame._proto.v04 import flame as pb
from flame._transport import Channel, open_grpc_loop, serve
from flame._wire import decode_task, encode_task_request

GET_TASK = "/flame.Frontend/GetTask"
WATCH_TASK = "/flame.Frontend/WatchTask"

ROOT = pathlib.Path(__file__).resolve().parent.parent
IN_FLIGHT = 64
WARM_UP = 200


# --------------------------------------------------------------------------
# The measurements, the same for every implementation


#: The deadline of the calls that carry one, in seconds.
DEADLINE = 60.0


async def sequential(call: Callable[[], Awaitable[object]], seconds: float) -> float:
    """Unary calls per second, one at a time."""
    for _ in range(WARM_UP):
        await call()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        await call()
        count += 1
    return count / (time.perf_counter() - start)


async def concurrent(call: Callable[[], Awaitable[object]], seconds: float) -> float:
    """Unary calls per second, with IN_FLIGHT of them in flight at all times."""
    counts = [0] * IN_FLIGHT
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(i: int) -> None:
        while time.perf_counter() < deadline:
            await call()
            counts[i] += 1

    async with anyio.create_task_group() as tg:
        for i in range(IN_FLIGHT):
            tg.start_soon(worker, i)
    return sum(counts) / (time.perf_counter() - start)


async def streamed(watch: Callable[[int], AsyncIterator[object]], messages: int) -> float:
    """Messages per second of one server stream of ``messages`` messages."""
    async for _ in watch(100):  # warm-up
        pass
    received = 0
    start = time.perf_counter()
    async for _ in watch(messages):
        received += 1
    elapsed = time.perf_counter() - start
    assert received == messages, (received, messages)
    return messages / elapsed


async def measure(
    call: Callable[..., Awaitable[object]],
    watch: Callable[[int], AsyncIterator[object]],
    seconds: float,
    messages: int,
) -> dict[str, float]:
    async def with_deadline() -> object:
        return await call(DEADLINE)

    return {
        "unary, sequential (calls/s)": await sequential(call, seconds),
        "unary, sequential, deadline (calls/s)": await sequential(with_deadline, seconds),
        f"unary, {IN_FLIGHT} in flight (calls/s)": await concurrent(call, seconds),
        "stream (messages/s)": await streamed(watch, messages),
    }


# --------------------------------------------------------------------------
# Ours


class Frontend(pb.FrontendBase):
    async def get_task(self, message: pb.GetTaskRequest) -> pb.Task:
        return pb.Task(
            metadata=pb.Metadata(id=message.task_id, name="bench"),
            spec=pb.TaskSpec(session_id=message.session_id, input=b"x" * 16),
            status=pb.TaskStatus(state=pb.TaskState.Running, creation_time=1),
        )

    async def watch_task(self, message: pb.WatchTaskRequest) -> AsyncIterator[pb.Task]:
        for i in range(int(message.task_id)):
            yield pb.Task(
                metadata=pb.Metadata(id=str(i)),
                status=pb.TaskStatus(state=pb.TaskState.Running, creation_time=i),
            )


async def ours(seconds: float, messages: int, mode: str = "stub") -> dict[str, float]:
    """Our server, and a client: our ``stub`` or ``lean`` path, or ``grpclib``'s (asyncio)."""
    loop = open_grpc_loop()
    try:
        async with (
            serve(loop, [Frontend()]) as server,
            await Channel.connect(server.address) as channel,
        ):
            stub = pb.FrontendStub(channel)
            grpclib_channel = None
            if mode == "grpclib":
                import grpclib.client

                grpclib_channel = grpclib.client.Channel("127.0.0.1", server.port)
                stub = pb.FrontendStub(grpclib_channel)
            request = pb.GetTaskRequest(task_id="7", session_id="3")
            encoded = encode_task_request("7", "3")

            async def call(timeout: float | None = None) -> object:  # noqa: ASYNC109
                if mode == "lean":
                    return await channel.call(GET_TASK, encoded, decode_task, timeout=timeout)
                return await stub.get_task(request, timeout=timeout)

            async def watch(count: int) -> AsyncIterator[object]:
                ask = pb.WatchTaskRequest(task_id=str(count), session_id="3")
                if mode == "lean":
                    async with channel.open_stream(
                        WATCH_TASK, encode_task_request(str(count), "3"), decode_task
                    ) as updates:
                        async for update in updates:
                            yield update
                    return
                if mode == "grpclib":
                    async for update in stub.watch_task(ask):
                        yield update
                    return
                async with channel.stream(stub.watch_task, ask) as updates:
                    async for update in updates:
                        yield update

            try:
                return await measure(call, watch, seconds, messages)
            finally:
                if grpclib_channel is not None:
                    grpclib_channel.close()
    finally:
        await loop.aclose()


# --------------------------------------------------------------------------
# grpcio, from the same proto files


def generate_grpcio(into: pathlib.Path) -> tuple[Any, Any, Any]:
    from grpc_tools import protoc

    proto = ROOT / "proto" / "v0.4"
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto}",
            f"--python_out={into}",
            f"--grpc_python_out={into}",
            str(proto / "types.proto"),
            str(proto / "frontend.proto"),
        ]
    )
    if status != 0:
        raise SystemExit(f"grpc_tools.protoc failed with status {status}")
    sys.path.insert(0, str(into))
    return (
        importlib.import_module("types_pb2"),
        importlib.import_module("frontend_pb2"),
        importlib.import_module("frontend_pb2_grpc"),
    )


async def grpcio(seconds: float, messages: int, modules: tuple[Any, Any, Any]) -> dict[str, float]:
    import grpc

    types_pb2, frontend_pb2, frontend_pb2_grpc = modules

    class Servicer(frontend_pb2_grpc.FrontendServicer):  # type: ignore[misc,name-defined]
        async def GetTask(self, request: Any, context: Any) -> Any:
            return types_pb2.Task(
                metadata=types_pb2.Metadata(id=request.task_id, name="bench"),
                spec=types_pb2.TaskSpec(session_id=request.session_id, input=b"x" * 16),
                status=types_pb2.TaskStatus(state=types_pb2.Running, creation_time=1),
            )

        async def WatchTask(self, request: Any, context: Any) -> AsyncIterator[Any]:
            for i in range(int(request.task_id)):
                yield types_pb2.Task(
                    metadata=types_pb2.Metadata(id=str(i)),
                    status=types_pb2.TaskStatus(state=types_pb2.Running, creation_time=i),
                )

    server = grpc.aio.server()
    frontend_pb2_grpc.add_FrontendServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = frontend_pb2_grpc.FrontendStub(channel)
            request = frontend_pb2.GetTaskRequest(task_id="7", session_id="3")

            async def call(timeout: float | None = None) -> object:  # noqa: ASYNC109
                return await stub.GetTask(request, timeout=timeout)

            async def watch(count: int) -> AsyncIterator[object]:
                ask = frontend_pb2.WatchTaskRequest(task_id=str(count), session_id="3")
                async for update in stub.WatchTask(ask):
                    yield update

            return await measure(call, watch, seconds, messages)
    finally:
        await server.stop(None)


# --------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per unary measurement")
    parser.add_argument("--messages", type=int, default=20_000, help="in the streamed measurement")
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    for mode in ("stub", "lean"):
        for backend in ("asyncio", "trio"):
            results[f"{mode}/{backend}"] = anyio.run(
                ours, args.seconds, args.messages, mode, backend=backend
            )
    results["grpclib"] = anyio.run(ours, args.seconds, args.messages, "grpclib")
    with tempfile.TemporaryDirectory(prefix="flame-bench-") as temp:
        modules = generate_grpcio(pathlib.Path(temp))
        results["grpcio"] = anyio.run(grpcio, args.seconds, args.messages, modules)

    names = list(results)
    rows = list(results["grpcio"])
    width = max(len(row) for row in rows)
    print(
        f"python {sys.version.split()[0]}, {args.seconds:g} s per unary measurement, "
        f"{args.messages} streamed messages"
    )
    print(
        f"{'':{width}}  "
        + "  ".join(f"{name:>14}" for name in names)
        + "  "
        + "  ".join(f"{name + '/grpcio':>20}" for name in names[:-1])
    )
    for row in rows:
        figures = "  ".join(f"{results[name][row]:>14,.0f}" for name in names)
        ratios = "  ".join(
            f"{results[name][row] / results['grpcio'][row]:>20.2f}" for name in names[:-1]
        )
        print(f"{row:{width}}  {figures}  {ratios}")
    print()
    print(
        "cost per sequential unary call (µs): "
        + ", ".join(
            f"{name} {1e6 / results[name]['unary, sequential (calls/s)']:.0f}" for name in names
        )
    )


if __name__ == "__main__":
    main()
