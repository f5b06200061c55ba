"""Channel construction shared by all clients: TLS, bearer token, size limits, retries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpc
from pydantic import BaseModel, Field


class ServiceUnavailableError(ConnectionError):
    """The service could not be reached after all retries; the message names the target."""


class ClientConfig(BaseModel):
    """How a client connects. Defaults suit loopback; clusters set TLS and a token."""

    target: str = Field(description="host:port of the service (or any gRPC target string).")
    timeout_s: float = Field(30.0, gt=0, description="Deadline of each call.")
    max_attempts: int = Field(5, ge=1, le=5, description="Attempts per call on UNAVAILABLE (gRPC caps this at 5).")
    initial_backoff_s: float = Field(0.1, gt=0, description="First retry delay; doubles each retry.")
    max_backoff_s: float = Field(2.0, gt=0, description="Largest retry delay.")
    wait_for_ready: bool = Field(True, description="Queue calls while the channel connects instead of failing at once.")
    max_message_mb: int = Field(64, ge=1, le=2047, description="Largest message sent or received, in MiB.")
    tls_ca_file: Path | None = Field(None, description="PEM CA that signed the server certificate; enables TLS.")
    tls_cert_file: Path | None = Field(None, description="PEM client certificate for mTLS.")
    tls_key_file: Path | None = Field(None, description="PEM key of the client certificate.")
    auth_token: str | None = Field(None, description="Bearer token sent as 'authorization' metadata.")


def _service_config(config: ClientConfig) -> str:
    if config.max_attempts < 2:
        return json.dumps({"methodConfig": [{"name": [{}]}]})
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{}],
                    "retryPolicy": {
                        "maxAttempts": config.max_attempts,
                        "initialBackoff": f"{config.initial_backoff_s}s",
                        "maxBackoff": f"{config.max_backoff_s}s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def make_channel(config: ClientConfig) -> grpc.Channel:
    """A synchronous channel with the configured security, limits and retry policy."""
    limit = config.max_message_mb * 1024 * 1024
    options = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", _service_config(config)),
        ("grpc.keepalive_time_ms", 30_000),
    ]
    if config.tls_ca_file is None:
        return grpc.insecure_channel(config.target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=config.tls_ca_file.read_bytes(),
        private_key=config.tls_key_file.read_bytes() if config.tls_key_file else None,
        certificate_chain=config.tls_cert_file.read_bytes() if config.tls_cert_file else None,
    )
    return grpc.secure_channel(config.target, credentials, options=options)


class BaseClient:
    """Holds the channel and the per-call metadata; subclasses add typed methods.

    A client built from a bare address reads its credentials from the environment, so every
    process that talks to a service (trainer, main job, inference, OpenRLHF's workers) is configured
    the same way: ``<ENV_PREFIX>_TOKEN`` (bearer token) and ``<ENV_PREFIX>_TLS_CA`` (PEM CA file)."""

    ENV_PREFIX = ""

    @classmethod
    def env_config(cls, target: str, **settings) -> ClientConfig:
        """A config for ``target`` with the credentials the environment gives this client
        (``<ENV_PREFIX>_TOKEN``, ``<ENV_PREFIX>_TLS_CA``) and ``settings`` on top."""
        env = os.environ if cls.ENV_PREFIX else {}
        ca = env.get(f"{cls.ENV_PREFIX}_TLS_CA")
        token = env.get(f"{cls.ENV_PREFIX}_TOKEN")
        return ClientConfig(target=target, auth_token=token or None, tls_ca_file=Path(ca) if ca else None, **settings)

    def __init__(self, config: ClientConfig | str) -> None:
        self.config = self.env_config(config) if isinstance(config, str) else config
        self.channel = make_channel(self.config)
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {self.config.auth_token}"),) if self.config.auth_token else ()
        )

    def _unavailable(self, exc: grpc.RpcError) -> Exception:
        code = exc.code() if hasattr(exc, "code") else None
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return ServiceUnavailableError(
                f"{type(self).__name__}: {self.config.target} unreachable after "
                f"{self.config.max_attempts} attempts ({code.name}: {exc.details()})"
            )
        return exc

    def wait_healthy(self, timeout_s: float = 30.0, service: str = "") -> None:
        """Blocks until the server's health service answers SERVING, or raises."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            response = stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise self._unavailable(exc) from exc
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            raise ServiceUnavailableError(f"{self.config.target} is not SERVING (status {response.status})")

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
