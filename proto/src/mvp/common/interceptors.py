"""Helpers for the project's gRPC server interceptors, and the interceptor that turns requests that
do not parse into INVALID_ARGUMENT."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator

import grpc


async def stream_items(handler, request_or_iterator, context: grpc.aio.ServicerContext) -> AsyncIterator:
    """The responses of a server-streaming handler of either style grpc.aio allows: an async
    generator (its items are yielded here), or a coroutine that sends with ``context.write`` (it
    is awaited here and yields nothing; grpc.health's ``Watch`` is one)."""
    result = handler(request_or_iterator, context)
    if inspect.isasyncgen(result):
        async for item in result:
            yield item
    else:
        await result


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
                async for item in stream_items(inner_us, request, context):
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
            async for item in stream_items(inner_ss, checked(requests, context), context):
                yield item

        return grpc.stream_stream_rpc_method_handler(stream_stream, des, ser)
