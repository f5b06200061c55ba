"""Bearer-token check for gRPC servers (an interceptor), configured by ``auth_token``."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import grpc

# Kubernetes' native gRPC probes cannot send metadata, so health checks are always allowed.
_EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


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
        self._expected = f"Bearer {token}".encode()

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
                given = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(given, self._expected):
                    return handler
                return _reject_like(handler, "invalid bearer token")
        return _reject_like(handler, "missing 'authorization: Bearer <token>' metadata")


class _Malformed:
    """Stands in for a request message that did not parse."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _safe(deserializer):
    if deserializer is None:
        return None

    def parse(data: bytes):
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError, invalid UTF-8 in a string field, ...
            return _Malformed(exc)

    return parse


async def _reject_malformed(request, context: grpc.aio.ServicerContext) -> None:
    if isinstance(request, _Malformed):
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"request is not a valid protobuf message: {type(request.error).__name__}"
        )


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):
    """Corrupt protobuf bytes (or invalid UTF-8 in a string field) are INVALID_ARGUMENT naming the
    problem, not the INTERNAL/UNKNOWN gRPC answers when its own deserializer raises."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        des, ser = _safe(handler.request_deserializer), handler.response_serializer
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(request, context):
                await _reject_malformed(request, context)
                return await inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, des, ser)
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            async def unary_stream(request, context):
                await _reject_malformed(request, context)
                async for item in inner_us(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(unary_stream, des, ser)

        async def checked(requests, context):
            async for request in requests:
                await _reject_malformed(request, context)
                yield request

        if handler.stream_unary is not None:
            inner_su = handler.stream_unary

            async def stream_unary(requests, context):
                return await inner_su(checked(requests, context), context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, des, ser)
        inner_ss = handler.stream_stream

        async def stream_stream(requests, context):
            async for item in inner_ss(checked(requests, context), context):
                yield item

        return grpc.stream_stream_rpc_method_handler(stream_stream, des, ser)
