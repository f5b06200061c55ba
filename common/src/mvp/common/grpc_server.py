"""The one way every MVP-Train gRPC server starts, serves and stops.

A server built here has: the standard health service, server reflection, Prometheus metrics on
their own port, optional TLS / mTLS, an optional bearer-token check, message-size, concurrency and
stream-idle limits, and a drain on SIGTERM/SIGINT (health flips to NOT_SERVING, new calls are refused,
in-flight calls get ``shutdown_grace_s`` to finish and ``shutdown_linger_s`` for their responses
to reach the clients).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mvp.common.auth import BearerTokenInterceptor
from mvp.common.interceptors import RequestGateInterceptor
from mvp.common.metrics import MetricsInterceptor, start_metrics_server
from mvp.common.procs import release_memory_every, responsive_server
from mvp.common.settings import GrpcServerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceBinding:
    """One servicer to mount: the generated ``add_XServicer_to_server`` function, the servicer
    instance, and the service's full proto name (for health and reflection)."""

    add_to_server: Callable[[object, grpc.aio.Server], None]
    servicer: object
    full_name: str


def grpc_options(settings: GrpcServerSettings) -> list[tuple[str, int]]:
    limit = settings.max_message_mb * 1024 * 1024
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


def _server_credentials(settings: GrpcServerSettings) -> grpc.ServerCredentials | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    key = settings.tls_key_file.read_bytes()
    cert = settings.tls_cert_file.read_bytes()
    client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


class GrpcServer:
    """A started gRPC server with health, reflection, metrics and the configured security."""

    def __init__(
        self, settings: GrpcServerSettings, bindings: Sequence[ServiceBinding], *, stream_idle_s: float | None = None
    ) -> None:
        """``stream_idle_s``: a request stream that sends nothing for this long is ended (the
        service's own setting, for services with streaming requests; ``None``: never)."""
        self.settings = settings
        self.bindings = list(bindings)
        # outermost first: metrics see every call, the token is checked before the request is looked at
        interceptors: list[grpc.aio.ServerInterceptor] = [MetricsInterceptor()]
        if settings.auth_token is not None:
            interceptors.append(BearerTokenInterceptor(settings.auth_token.get_secret_value()))
        self.gate = RequestGateInterceptor(settings.max_concurrent_rpcs, stream_idle_s)
        interceptors.append(self.gate)
        self.server = grpc.aio.server(interceptors=interceptors, options=grpc_options(settings))
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for binding in self.bindings:
            binding.add_to_server(binding.servicer, self.server)
        names = [b.full_name for b in self.bindings]
        names += [health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, self.server)
        self.port: int | None = None
        self.metrics_port: int | None = None

    async def start(self) -> int:
        """Binds, starts and marks every service SERVING. Returns the bound gRPC port."""
        address = f"{self.settings.host}:{self.settings.port}"
        credentials = _server_credentials(self.settings)
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
        if not self.port:
            raise OSError(f"could not bind gRPC server to {address}")
        self.metrics_port = start_metrics_server(self.settings.metrics_port, self.settings.host)
        await self.server.start()
        for name in ["", *(b.full_name for b in self.bindings)]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "grpc server listening",
            extra={
                "services": [b.full_name for b in self.bindings],
                "host": self.settings.host,
                "port": self.port,
                "metrics_port": self.metrics_port,
                "tls": credentials is not None,
                "mtls": self.settings.tls_client_ca_file is not None,
                "auth": self.settings.auth_token is not None,
            },
        )
        return self.port

    async def stop(self) -> None:
        """Drains: NOT_SERVING first (so load balancers stop routing), new calls UNAVAILABLE, the
        open ones given the grace to finish and ``shutdown_linger_s`` for their responses to reach
        the clients; then the connections close and whatever still runs is cancelled."""
        deadline = time.monotonic() + self.settings.shutdown_grace_s
        await self.health.enter_graceful_shutdown()
        await self.gate.drain(deadline, self.settings.shutdown_linger_s)
        await self.server.stop(max(0.0, deadline - time.monotonic()))
        log.info("grpc server stopped", extra={"port": self.port})


TRIM_EVERY_S = 2.0


async def serve(
    server: GrpcServer,
    *,
    on_started: Callable[[GrpcServer], Awaitable[None]] | None = None,
    on_stopping: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Starts ``server`` and runs until SIGTERM or SIGINT, then drains and returns."""
    loop = asyncio.get_running_loop()
    responsive_server()
    # asyncio.to_thread (and loop.run_in_executor(None, ...)) run on this bounded pool
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=server.settings.worker_threads, thread_name_prefix="mvp-worker")
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    if on_started is not None:
        await on_started(server)
    trim = asyncio.create_task(release_memory_every(TRIM_EVERY_S))
    await stop.wait()
    trim.cancel()
    log.info("shutdown requested; draining in-flight calls", extra={"grace_s": server.settings.shutdown_grace_s})
    if on_stopping is not None:
        await on_stopping()
    await server.stop()
