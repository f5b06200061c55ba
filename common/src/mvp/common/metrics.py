"""Prometheus helpers shared by every process: the /metrics HTTP endpoint and gRPC server metrics.

The gRPC metric names follow go-grpc-prometheus (``grpc_server_*``) so existing dashboards work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram, disable_created_metrics, start_http_server

from mvp.common.interceptors import stream_items

log = logging.getLogger(__name__)
# `*_created` series double the exposition size and no dashboard of ours uses them.
disable_created_metrics()

GRPC_STARTED = Counter("grpc_server_started_total", "RPCs started on the server.", ["grpc_service", "grpc_method"])
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from receiving an RPC to sending its last response.",
    ["grpc_service", "grpc_method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def start_metrics_server(port: int | None, host: str = "0.0.0.0") -> int | None:
    """Serves the default Prometheus registry on ``host:port``/metrics in a daemon thread.

    Returns the bound port (useful with port 0), or None when ``port`` is None (disabled)."""
    if port is None:
        return None
    server, _thread = start_http_server(port, addr=host)
    bound = int(server.server_port)
    log.info("metrics listening", extra={"metrics_port": bound, "host": host})
    return bound


def _split_method(full_method: str) -> tuple[str, str]:
    _, service, method = full_method.split("/", 2)
    return service, method


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every RPC, labelled by service, method and final status code."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, method = _split_method(handler_call_details.method)
        if service.startswith("grpc.reflection"):
            return handler
        started = GRPC_STARTED.labels(service, method)
        seconds = GRPC_HANDLING_SECONDS.labels(service, method)

        def finish(t0: float, context: grpc.aio.ServicerContext, error: BaseException | None) -> None:
            code = context.code()
            if code is None:
                code = grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN
            if isinstance(code, int):
                code = grpc.StatusCode(code)  # pragma: no cover - older grpc returned ints
            GRPC_HANDLED.labels(service, method, code.name).inc()
            seconds.observe(time.perf_counter() - t0)

        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started.inc()
                t0 = time.perf_counter()
                try:
                    response = await inner_uu(request, context)
                except BaseException as exc:
                    finish(t0, context, exc)
                    raise
                finish(t0, context, None)
                return response

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        streaming = handler.unary_stream or handler.stream_stream
        if streaming is not None:
            # One wrapper for both streaming kinds: the first argument is a request or an iterator.
            async def stream(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
                started.inc()
                t0 = time.perf_counter()
                try:
                    async for item in stream_items(streaming, request_or_iterator, context):
                        yield item
                except BaseException as exc:
                    finish(t0, context, exc)
                    raise
                finish(t0, context, None)

            make = (
                grpc.unary_stream_rpc_method_handler
                if handler.unary_stream is not None
                else grpc.stream_stream_rpc_method_handler
            )
            return make(stream, handler.request_deserializer, handler.response_serializer)
        return handler
