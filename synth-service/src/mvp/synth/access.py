"""What a request may name: the server reads and writes only inside the stores and folders its
operator configured (``SynthServerSettings``), never a path or model a client chose.

- ``s3://bucket/key`` URIs: the bucket must be in ``allowed_buckets`` (empty: any bucket of the
  configured store); no ``.``/``..``/empty segments and no backslashes in the key.
- local paths: only inside one of ``local_roots`` (empty: local paths are refused), after resolving
  symlinks, so ``..`` or a link cannot leave the root.
- job ids: ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}`` without ``..`` (they name files under ``state_uri``).
- ``clip:PATH`` embedders: only the model the operator configured (``clip_model``).
- URIs: at most ``max_uri_bytes``; configs: at most the operator's caps (``max_fps``,
  ``max_image_size``, ...) on every field that makes one video cost more memory or work.

``job`` is every check of a corpus job: ``SubmitJob`` and the resume of a persisted job both run it.
"""

from __future__ import annotations

import re
from pathlib import Path

from mvp.common.storage import S3Uri, is_s3
from mvp.common.synth_config import SynthConfig
from mvp.synth.settings import SynthServerSettings
from mvp.v1 import synthesis_pb2

JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class AccessDeniedError(Exception):
    """A request named something outside what the operator allowed. ``permission`` distinguishes
    a well-formed name in a forbidden place (PERMISSION_DENIED) from a malformed one
    (INVALID_ARGUMENT)."""

    def __init__(self, message: str, permission: bool = False) -> None:
        super().__init__(message)
        self.permission = permission


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


# The config fields a request may set that make one video cost more, each capped by the setting
# ``max_<field>``.
CAPPED_FIELDS = ("fps", "image_size", "num_frames", "num_distractors", "samples_per_video")


class AccessPolicy:
    def __init__(self, settings: SynthServerSettings) -> None:
        self.buckets = set(_split(settings.allowed_buckets))
        self.roots = [Path(r).resolve() for r in _split(settings.local_roots)]
        self.clip_model = settings.clip_model
        self.max_uri_bytes = settings.max_uri_bytes
        self.caps = {name: getattr(settings, f"max_{name}") for name in CAPPED_FIELDS}

    def uri(self, uri: str, what: str) -> str:
        """The URI if the server may use it, else ``AccessDeniedError`` naming the field."""
        size = len(uri.encode("utf-8", "surrogatepass"))
        if size > self.max_uri_bytes:
            raise AccessDeniedError(
                f"{what}: {size} bytes exceeds this server's limit of {self.max_uri_bytes} (MVP_SYNTH_MAX_URI_BYTES)"
            )
        if not uri or "\x00" in uri or "\\" in uri:
            raise AccessDeniedError(f"{what}: {uri!r} is not a usable URI")
        if is_s3(uri):
            try:
                parsed = S3Uri.parse(uri)
            except ValueError as exc:
                raise AccessDeniedError(f"{what}: {exc}") from None
            segments = uri.removeprefix("s3://").rstrip("/").split("/")[1:]
            if any(s in ("", ".", "..") for s in segments) or not parsed.bucket:
                raise AccessDeniedError(f"{what}: {uri!r} has an empty, '.' or '..' path segment")
            if self.buckets and parsed.bucket not in self.buckets:
                raise AccessDeniedError(
                    f"{what}: bucket {parsed.bucket!r} is not one this server serves", permission=True
                )
            return uri
        if "://" in uri:
            raise AccessDeniedError(f"{what}: only s3:// URIs and configured local folders are accepted, got {uri!r}")
        if not self.roots:
            raise AccessDeniedError(
                f"{what}: local paths are not accepted by this server (its operator sets MVP_SYNTH_LOCAL_ROOTS)",
                permission=True,
            )
        path = Path(uri).resolve()
        if not any(path == root or root in path.parents for root in self.roots):
            raise AccessDeniedError(f"{what}: {uri!r} is outside the server's local roots", permission=True)
        return str(path)

    def job_id(self, job_id: str) -> str:
        if job_id and (not JOB_ID.fullmatch(job_id) or ".." in job_id):
            raise AccessDeniedError(f"job_id {job_id[:80]!r} must match {JOB_ID.pattern} without '..'")
        return job_id

    def config(self, config: SynthConfig) -> SynthConfig:
        """The config if it stays within the operator's caps and names only the operator's model."""
        for name, cap in self.caps.items():
            value = getattr(config, name)
            if value > cap:
                raise AccessDeniedError(
                    f"config.{name}={value} exceeds this server's cap of {cap} (MVP_SYNTH_MAX_{name.upper()}); lower it"
                )
        self.embedder(config.embedder)
        return config

    def job(self, request: synthesis_pb2.SubmitJobRequest, config: SynthConfig) -> synthesis_pb2.SubmitJobRequest:
        """Every check of a corpus job; returns the request with its URIs as the server uses them
        (local paths resolved)."""
        if not request.input_uri or not request.output_uri:
            raise AccessDeniedError("input_uri and output_uri are required")
        if request.shard_count and not 0 <= request.shard_index < request.shard_count:
            raise AccessDeniedError("shard_index must be in [0, shard_count)")
        checked = synthesis_pb2.SubmitJobRequest()
        checked.CopyFrom(request)
        checked.input_uri = self.uri(request.input_uri, "input_uri")
        checked.output_uri = self.uri(request.output_uri, "output_uri")
        self.job_id(request.job_id)
        self.config(config)
        return checked

    def embedder(self, embedder: str) -> str:
        if embedder.startswith("clip:") and embedder.removeprefix("clip:") != self.clip_model:
            raise AccessDeniedError(
                "embedder: model paths come from the operator (MVP_SYNTH_CLIP_MODEL), not from a request; "
                f"this server {'allows clip:' + self.clip_model if self.clip_model else 'has no CLIP model'}",
                permission=True,
            )
        return embedder
