"""The bearer-token check of every port a process serves: ``bearer_matches`` is the one comparison
(gRPC metadata here, the reward-service's aiohttp port, `mvp serve`'s ASGI middleware), and
``BearerTokenInterceptor`` applies it to gRPC calls, configured by ``auth_token``."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import grpc

# Kubernetes' native gRPC probes cannot send metadata, so health checks are always allowed.
_EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


def bearer_matches(given: bytes | str | None, token: bytes) -> bool:
    """Whether an ``Authorization`` value is ``Bearer <token>`` (the scheme in any case, RFC 7235),
    compared in constant time."""
    if given is None:
        return False
    raw = given.encode() if isinstance(given, str) else given
    scheme, _, key = raw.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(key, token)


def _reject_like(handler: grpc.RpcMethodHandler, details: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that fails with UNAUTHENTICATED."""

    async def abort(request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, details)

    async def abort_stream(request: object, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, details)
        yield  # pragma: no cover - makes this an async generator

    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(abort, des, ser)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(abort_stream, des, ser)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(abort, des, ser)
    return grpc.stream_stream_rpc_method_handler(abort_stream, des, ser)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls whose ``authorization`` metadata is not ``Bearer <token>``."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("auth token must not be empty")
        self._token = token.encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(_EXEMPT_PREFIXES):
            return handler
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                if bearer_matches(value, self._token):
                    return handler
                return _reject_like(handler, "invalid bearer token")
        return _reject_like(handler, "missing 'authorization: Bearer <token>' metadata")
