"""What a request may name: the server reads and writes only inside the stores and folders its
operator configured (``SynthServerSettings``), never a path or model a client chose.

- ``s3://bucket/key`` URIs: the bucket must be in ``allowed_buckets`` (empty: any bucket of the
  configured store); no ``.``/``..``/empty segments and no backslashes in the key.
- local paths: only inside one of ``local_roots`` (empty: local paths are refused), after resolving
  symlinks, so ``..`` or a link cannot leave the root.
- job ids: ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}`` without ``..`` (they name files under ``state_uri``).
- ``clip:PATH`` embedders: only the model the operator configured (``clip_model``).
"""

from __future__ import annotations

import re
from pathlib import Path

from mvp.common.storage import S3Uri, is_s3

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


class AccessPolicy:
    def __init__(self, allowed_buckets: str = "", local_roots: str = "", clip_model: str | None = None) -> None:
        self.buckets = set(_split(allowed_buckets))
        self.roots = [Path(r).resolve() for r in _split(local_roots)]
        self.clip_model = clip_model

    def uri(self, uri: str, what: str) -> str:
        """The URI if the server may use it, else ``AccessDeniedError`` naming the field."""
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

    def embedder(self, embedder: str) -> str:
        if embedder.startswith("clip:") and embedder.removeprefix("clip:") != self.clip_model:
            raise AccessDeniedError(
                "embedder: model paths come from the operator (MVP_SYNTH_CLIP_MODEL), not from a request; "
                f"this server {'allows clip:' + self.clip_model if self.clip_model else 'has no CLIP model'}",
                permission=True,
            )
        return embedder
