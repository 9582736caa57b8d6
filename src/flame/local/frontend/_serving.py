"""What every frontend shares: serving a wire's ``Frontend`` from plain handlers.

A wire module (``_v04``, ``_v06``) writes each method of its ``Frontend`` as
a plain method named as the generated one (``create_task``): a function that
takes the request and returns the reply, built at once, or, for a streaming
method, an async generator of replies. It raises :class:`FlameError` to
refuse; its table of statuses says which gRPC status each code becomes on
its wire. :func:`serving` turns such an object into the handlers the
transport's server serves, and adds what every method of every wire needs:

* the request is read by a checked decoder (:mod:`flame._wire_check`), or by
  the hand-written codec of :mod:`flame._wire` for the calls made per task,
  which refuses a field of the wrong wire type itself: a malformed request
  is refused with INVALID_ARGUMENT naming the field;
* nothing is told to a client before it is committed: each reply (and each
  message of a stream) waits until the store has committed every change
  made so far (at once with memory storage). Replies are built before that
  wait, so a reply says what was true when the call was made, not something
  newer than the commit;
* a reply may be bytes already encoded (:class:`Encoded`), as the per-task
  replies are: no message is built for them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Any

from betterproto2.casing import snake_case

from ..._errors import FlameError, FlameErrorCode
from ..._transport import refuse, server_stream_handler, unary_handler
from ..._wire_check import checked
from .._storage import Storage

__all__ = ["Encoded", "Service", "serving"]

#: gRPC status names, by the FlameErrorCode of a refusal.
StatusTable = Mapping[FlameErrorCode, str]


class Encoded:
    """A reply already encoded: the handler sends these bytes as they are."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        return self.data

    def __bytes__(self) -> bytes:
        return self.data


class Service:
    """What :func:`flame._transport.serve` serves: a mapping of paths to handlers."""

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping

    def __mapping__(self) -> dict[str, Any]:
        return self._mapping


def _refusal(error: FlameError, statuses: StatusTable) -> Exception:
    return refuse(statuses.get(error.code, "INTERNAL"), error.message)


async def _committed(storage: Storage, statuses: StatusTable) -> None:
    try:
        await storage.committed()
    except FlameError as error:
        raise _refusal(error, statuses) from None


def _unary(
    method: Callable[[Any], Any], storage: Storage, statuses: StatusTable
) -> Callable[[Any], Any]:
    async def call(request: Any) -> Any:
        try:
            reply = method(request)
        except FlameError as error:
            raise _refusal(error, statuses) from None
        if storage.unwritten:
            await _committed(storage, statuses)
        return reply

    return call


def _streaming(
    method: Callable[[Any], AsyncIterator[Any]], storage: Storage, statuses: StatusTable
) -> Callable[[Any], AsyncIterator[Any]]:
    async def call(request: Any) -> AsyncIterator[Any]:
        replies = method(request)
        try:
            async for reply in replies:
                if storage.unwritten:
                    await _committed(storage, statuses)
                yield reply
        except FlameError as error:
            raise _refusal(error, statuses) from None
        finally:
            await replies.aclose()  # type: ignore[attr-defined]

    return call


def serving(
    generated: type,
    implementation: object,
    storage: Storage,
    *,
    statuses: StatusTable,
    fast_decoders: Mapping[str, Callable[[bytes], Any]] | None = None,
    encoded: Collection[str] = (),
) -> Service:
    """Serve every method of the generated service base ``generated`` from ``implementation``.

    ``fast_decoders`` read the requests of some paths in place of the checked
    generated decoder; the replies of the paths in ``encoded`` are
    :class:`Encoded`.
    """
    mapping: dict[str, Any] = {}
    fast = fast_decoders or {}
    for path, handler in generated().__mapping__().items():
        method = getattr(implementation, snake_case(path.rsplit("/", 1)[1]))
        decode = fast.get(path) or checked(handler.request_type)
        reply_type = Encoded if path in encoded else handler.reply_type
        if handler.cardinality.server_streaming:
            mapping[path] = server_stream_handler(
                _streaming(method, storage, statuses), decode, reply_type
            )
        else:
            mapping[path] = unary_handler(_unary(method, storage, statuses), decode, reply_type)
    return Service(mapping)
