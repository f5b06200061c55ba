"""Settings shared by all components, and the bridge from pydantic settings to CLI flags.

Every component declares one ``pydantic_settings.BaseSettings`` subclass. Values come, in order of
precedence, from command-line flags, ``MVP_*`` environment variables, and the documented defaults.
``add_settings_flags`` turns each field into a ``--field-name`` flag so a flag always names the
field it sets.
"""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)


class StoreSettings(BaseSettings):
    """Where the S3-compatible object store (MinIO in production) is."""

    model_config = SettingsConfigDict(env_prefix="MVP_S3_", extra="ignore")

    endpoint: str | None = Field(
        None,
        description="S3 endpoint as host:port or URL (e.g. http://minio:9000). "
        "Unset means no object store: only local paths work.",
    )
    access_key: SecretStr = Field(SecretStr("minioadmin"), description="S3 access key.")
    secret_key: SecretStr = Field(SecretStr("minioadmin"), description="S3 secret key.")
    region: str = Field("us-east-1", description="S3 region (MinIO ignores it; AWS needs it).")
    secure: bool | None = Field(
        None, description="Use TLS to the store. Default: inferred from the endpoint's scheme (https)."
    )


class LoggingSettings(BaseSettings):
    """How a process logs."""

    model_config = SettingsConfigDict(env_prefix="MVP_", extra="ignore")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_format: Literal["json", "text"] = Field(
        "json", description="json: one JSON object per line (for log collectors); text: for humans."
    )


# The services' default gRPC ports and the reward-service address clients default to (one place).
SYNTH_PORT = 50051
REWARD_PORT = 50052
REWARD_ADDR = f"127.0.0.1:{REWARD_PORT}"


class GrpcServerSettings(BaseSettings):
    """Transport, limits and security of a gRPC server. Each service subclasses this with its
    own environment prefix (``MVP_REWARD_``, ``MVP_SYNTH_``)."""

    model_config = SettingsConfigDict(extra="ignore")

    host: str = Field(
        "127.0.0.1",
        description="Address to bind. Loopback by default so nothing is exposed by accident; containers set 0.0.0.0.",
    )
    port: int = Field(SYNTH_PORT, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Prometheus /metrics port (0 picks a free one; unset disables)."
    )
    tls_cert_file: Path | None = Field(None, description="PEM server certificate; enables TLS.")
    tls_key_file: Path | None = Field(None, description="PEM private key of the server certificate.")
    tls_client_ca_file: Path | None = Field(
        None, description="PEM CA bundle; when set, clients must present a certificate it signed (mTLS)."
    )
    auth_token: SecretStr | None = Field(
        None,
        description="When set, every call except health checks must carry 'authorization: Bearer <token>' metadata.",
    )
    max_message_mb: int = Field(64, ge=1, le=2047, description="Largest request or response message, in MiB.")
    max_concurrent_rpcs: int | None = Field(
        None,
        ge=1,
        description="Calls beyond this many in flight are rejected with RESOURCE_EXHAUSTED (health checks "
        "are never counted nor rejected).",
    )
    worker_threads: int = Field(
        2,
        ge=1,
        le=64,
        description="Threads that run the handlers' blocking and CPU work (scoring, large-request parsing, "
        "store I/O). Few on purpose: Python threads share one interpreter lock, and each extra busy thread "
        "delays the event loop that answers health checks.",
    )
    shutdown_grace_s: float = Field(
        15.0, ge=0, description="On SIGTERM, how long in-flight calls may run before they are cancelled."
    )
    shutdown_linger_s: float = Field(
        1.0,
        ge=0,
        description="On SIGTERM, how long connections stay open after the last in-flight call ended, so a "
        "client that reads its response late still gets it (counted inside shutdown_grace_s).",
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> GrpcServerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mTLS) needs tls_cert_file and tls_key_file")
        return self


def _flag_type(annotation: Any) -> tuple[Any, bool]:
    """Returns (scalar type for argparse, is_bool) for a field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _flag_type(args[0])
        return str, False
    if origin is Literal:
        return str, False
    if annotation is bool:
        return bool, True
    if annotation in (int, float, str):
        return annotation, False
    return str, False


def _env_name(cls: type[BaseSettings], name: str) -> str:
    prefix = cls.model_config.get("env_prefix", "") or ""
    return f"{prefix}{name}".upper()


def add_settings_flags(
    parser: argparse.ArgumentParser, cls: type[BaseSettings], *, skip: set[str] | None = None
) -> None:
    """Adds one ``--field-name`` flag per field of ``cls``. Flags default to None so that unset
    flags fall back to the environment and then to the field default."""
    group = parser.add_argument_group(f"{cls.__name__} (flags override environment variables)")
    for name, field in cls.model_fields.items():
        if skip and name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        scalar, is_bool = _flag_type(field.annotation)
        default = field.default
        if isinstance(default, SecretStr):
            default = "***"
        help_text = f"{field.description or ''} [env {_env_name(cls, name)}; default {default!r}]"
        help_text = help_text.replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f"settings__{name}", "default": None, "help": help_text}
        if is_bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = scalar
            if typing.get_origin(field.annotation) is Literal:
                kwargs["choices"] = typing.get_args(field.annotation)
        group.add_argument(flag, **kwargs)


def settings_from_args(cls: type[S], args: argparse.Namespace, base: dict[str, Any] | None = None) -> S:
    """Builds ``cls`` from the flags set on the command line, then ``base`` (e.g. a config file's
    values), then the environment and the defaults. A flag and ``base`` that set one field to two
    values are an error naming both, never a silent override."""
    overrides = {
        key.removeprefix("settings__"): value
        for key, value in vars(args).items()
        if key.startswith("settings__") and value is not None and key.removeprefix("settings__") in cls.model_fields
    }
    base = base or {}
    for key, value in overrides.items():
        if key in base and base[key] != value:
            flag = "--" + key.replace("_", "-")
            raise ValueError(f"{key} is set twice: {flag} {value} and {base[key]!r} in the config file; set it once")
    return cls(**{**base, **overrides})


def load_config_file(path: Path) -> dict[str, Any]:
    """Reads a JSON or YAML (by suffix) config file into a dict; an empty file is {}."""
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        import json

        data = json.loads(text) if text.strip() else {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data
