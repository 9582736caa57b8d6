"""A unary handler that asks for it is given the call's text headers."""

from __future__ import annotations

from typing import Any

from flame._proto.v04 import flame as pb
from flame._transport import Channel, GrpcLoop, serve, unary_handler
from flame._wire_check import checked


class Manager(pb.GrpcServiceManagerBase):  # type: ignore[misc]
    """RegisterService served by unary_handler(metadata=True): keeps what it was given."""

    def __init__(self) -> None:
        self.given: list[dict[str, str]] = []

    def __mapping__(self) -> dict[str, Any]:
        return {
            path: unary_handler(
                self.register_service,
                checked(generated.request_type),
                generated.reply_type,
                metadata=True,
            )
            for path, generated in super().__mapping__().items()
        }

    async def register_service(
        self, message: pb.RegisterServiceRequest, metadata: dict[str, str]
    ) -> pb.RegisterServiceResponse:
        self.given.append(metadata)
        return pb.RegisterServiceResponse()


async def test_a_handler_with_metadata_is_given_the_calls_headers(grpc_loop: GrpcLoop) -> None:
    manager = Manager()
    request = pb.RegisterServiceRequest(service_id="1")
    async with serve(grpc_loop, [manager]) as server:
        headers = [("flame-service-token", "s3cret"), ("x-long", "v" * 300)]
        async with await Channel.connect(server.address, headers=headers) as channel:
            await channel.unary(pb.GrpcServiceManagerStub(channel).register_service, request)
        async with await Channel.connect(server.address) as bare:
            await bare.unary(pb.GrpcServiceManagerStub(bare).register_service, request)
    with_headers, without = manager.given
    assert with_headers["flame-service-token"] == "s3cret"
    assert with_headers["x-long"] == "v" * 300
    assert "flame-service-token" not in without
