"""Settings of `mvp synth serve` (environment prefix ``MVP_SYNTH_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from mvp.common.settings import SYNTH_PORT, GrpcServerSettings


class SynthServerSettings(GrpcServerSettings):
    model_config = SettingsConfigDict(env_prefix="MVP_SYNTH_", extra="ignore")

    port: int = Field(SYNTH_PORT, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int | None = Field(
        9091, ge=0, le=65535, description="Prometheus /metrics port (0 picks a free one; unset disables)."
    )
    max_message_mb: int = Field(
        4,
        ge=1,
        le=2047,
        description="Largest request or response message, in MiB (requests hold URIs and settings, never media).",
    )
    workers: int = Field(2, ge=1, description="Worker processes per corpus job (one video each at a time).")
    state_uri: str | None = Field(
        None,
        description="Where job specs are persisted (s3://bucket/prefix or a folder); unfinished jobs found "
        "there are resumed on start. Unset: jobs live only in memory.",
    )
    max_jobs: int = Field(4, ge=1, description="Corpus jobs allowed to run at once; more are rejected.")
    allowed_buckets: str = Field(
        "",
        description="Comma-separated buckets requests may read and write (empty: any bucket of the configured store).",
    )
    local_roots: str = Field(
        "",
        description="Comma-separated local folders requests may read and write (empty: requests may not name "
        "local paths at all).",
    )
    clip_model: str | None = Field(
        None, description="The one CLIP model folder a request may use (embedder 'clip:<this path>')."
    )
