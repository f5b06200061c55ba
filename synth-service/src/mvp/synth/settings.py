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
    # Caps on what one request may ask for (docs/security.md): a config over one of the first five is
    # INVALID_ARGUMENT (a resumed job: FAILED); the last two apply over every config's own value.
    max_fps: float = Field(
        2.0,
        gt=0,
        description="Highest config.fps a request may set (the paper samples at 1): frames converted and kept "
        "grow with it.",
    )
    max_image_size: int = Field(
        640,
        ge=32,
        description="Highest config.image_size a request may set: a kept frame takes about image_size^2 * 1.7 "
        "bytes (16:9).",
    )
    max_num_frames: int = Field(32, ge=3, description="Highest config.num_frames a request may set.")
    max_num_distractors: int = Field(16, ge=0, description="Highest config.num_distractors a request may set.")
    max_samples_per_video: int = Field(16, ge=1, description="Highest config.samples_per_video a request may set.")
    max_decoded_frames: int = Field(
        3600,
        ge=1,
        description="Decoding of a video stops after this many sampled frames, whatever the config says (its "
        "own max_decoded_frames applies when lower): with max_image_size it bounds one video's frames in memory.",
    )
    max_pixels: int = Field(
        4096 * 4096,
        ge=1,
        description="Videos with more pixels per frame are skipped (resolution_too_large) before decoding, "
        "whatever the config says (its own max_pixels applies when lower): the decoder's frame buffers grow "
        "with it.",
    )
    max_uri_bytes: int = Field(
        4096, ge=16, description="Longest URI (UTF-8 bytes) a request may name; longer is INVALID_ARGUMENT."
    )
    max_finished_jobs: int = Field(
        256,
        ge=1,
        description="Finished jobs kept in memory (GetJob, ListJobs); older ones are forgotten, their state "
        "files under state_uri stay.",
    )
