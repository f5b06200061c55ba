"""All object-store and file access of MVP-Train goes through ``Storage``.

URIs are either ``s3://bucket/key`` (any S3-compatible endpoint through the ``minio`` SDK, MinIO in
production) or local filesystem paths. Writes are atomic per object in both (S3 PUT; temp file +
rename locally), which the synthesis commit protocol relies on.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from minio import Minio
from minio.error import S3Error

from mvp.common.settings import StoreSettings


class StorageError(RuntimeError):
    """A storage operation failed; the message names the URI and the cause."""


class NotFoundError(StorageError):
    """The object, prefix or bucket does not exist."""


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an s3:// URI: {uri!r} (expected s3://bucket/key)")
        return cls(parsed.netloc, parsed.path.lstrip("/"))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def join(base: str, *parts: str) -> str:
    """Joins URI or path segments with single slashes."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int
    etag: str


def make_minio(settings: StoreSettings) -> Minio:
    if not settings.endpoint:
        raise StorageError("no object store configured: set MVP_S3_ENDPOINT (e.g. http://127.0.0.1:9000)")
    parsed = urlparse(settings.endpoint if "://" in settings.endpoint else f"http://{settings.endpoint}")
    secure = settings.secure if settings.secure is not None else parsed.scheme == "https"
    return Minio(
        parsed.netloc,
        access_key=settings.access_key.get_secret_value(),
        secret_key=settings.secret_key.get_secret_value(),
        region=settings.region,
        secure=secure,
    )


class Storage:
    """Reads and writes objects by URI: ``s3://`` through the minio SDK, anything else as a path."""

    def __init__(self, settings: StoreSettings | None = None) -> None:
        self.settings = settings or StoreSettings()
        self._client: Minio | None = None

    @property
    def client(self) -> Minio:
        if self._client is None:
            self._client = make_minio(self.settings)
        return self._client

    def _s3(self, uri: str) -> S3Uri:
        return S3Uri.parse(uri)

    def _raise(self, uri: str, exc: S3Error) -> None:
        if exc.code in ("NoSuchBucket", "NoSuchKey", "NoSuchObject", "ResourceNotFound"):
            raise NotFoundError(f"{uri}: {exc.code} ({exc.message})") from exc
        raise StorageError(f"{uri}: {exc.code} ({exc.message})") from exc

    def ensure_bucket(self, bucket: str) -> None:
        """Creates ``bucket`` if it does not exist."""
        try:
            if not self.client.bucket_exists(bucket):
                self.client.make_bucket(bucket)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                self._raise(f"s3://{bucket}", exc)

    def bucket_exists(self, bucket: str) -> bool:
        return bool(self.client.bucket_exists(bucket))

    def get_bytes(self, uri: str) -> bytes:
        if not is_s3(uri):
            try:
                return Path(uri).read_bytes()
            except FileNotFoundError as exc:
                raise NotFoundError(f"{uri}: no such file") from exc
        loc = self._s3(uri)
        try:
            response = self.client.get_object(loc.bucket, loc.key)
        except S3Error as exc:
            self._raise(uri, exc)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def download(self, uri: str, path: str | Path) -> None:
        """Copies the object to a local file (atomically)."""
        if not is_s3(uri):
            atomic_write(Path(path), self.get_bytes(uri))
            return
        loc = self._s3(uri)
        tmp = f"{path}.part"
        try:
            self.client.fget_object(loc.bucket, loc.key, tmp)
        except S3Error as exc:
            self._raise(uri, exc)
        os.replace(tmp, path)

    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        if not is_s3(uri):
            atomic_write(Path(uri), data)
            return
        loc = self._s3(uri)
        try:
            self.client.put_object(loc.bucket, loc.key, io.BytesIO(data), len(data), content_type=content_type)
        except S3Error as exc:
            self._raise(uri, exc)

    def put_file(self, src: str, uri: str, content_type: str = "application/octet-stream") -> None:
        """Uploads (or copies) the local file ``src`` to ``uri``."""
        if not is_s3(uri):
            atomic_write(Path(uri), Path(src).read_bytes())
            return
        loc = self._s3(uri)
        try:
            self.client.fput_object(loc.bucket, loc.key, src, content_type=content_type)
        except S3Error as exc:
            self._raise(uri, exc)

    def exists(self, uri: str) -> bool:
        if not is_s3(uri):
            return Path(uri).exists()
        loc = self._s3(uri)
        try:
            self.client.stat_object(loc.bucket, loc.key)
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return False
            self._raise(uri, exc)
        return False

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Lists objects under ``prefix`` recursively, in lexicographic order of their URI."""
        if not is_s3(prefix):
            root = Path(prefix)
            if not root.exists():
                raise NotFoundError(f"{prefix}: no such directory")
            files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
            for path in files:
                yield ObjectInfo(str(path), path.stat().st_size, "")
            return
        loc = self._s3(prefix)
        try:
            if not self.client.bucket_exists(loc.bucket):
                raise NotFoundError(f"{prefix}: bucket {loc.bucket!r} does not exist")
            for obj in self.client.list_objects(loc.bucket, prefix=loc.key, recursive=True):
                if obj.is_dir:
                    continue
                yield ObjectInfo(f"s3://{loc.bucket}/{obj.object_name}", int(obj.size or 0), obj.etag or "")
        except S3Error as exc:
            self._raise(prefix, exc)

    def delete(self, uri: str) -> None:
        if not is_s3(uri):
            Path(uri).unlink(missing_ok=True)
            return
        loc = self._s3(uri)
        try:
            self.client.remove_object(loc.bucket, loc.key)
        except S3Error as exc:
            self._raise(uri, exc)


def atomic_write(path: Path, data: bytes, durable: bool = False) -> None:
    """Writes ``path`` whole or not at all (a temporary ``.<name>.*.part`` beside it, renamed over
    it). ``durable``: the file and the rename are also fsynced before returning, so the write
    survives a crash of the process or the machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def download_folder(storage: Storage, uri: str, folder: Path) -> Path:
    """Every object directly under ``uri/`` into ``folder``, which is replaced: the only path this
    deletes is the one the caller named, and object names never leave it."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for info in storage.list(uri.rstrip("/") + "/"):
        name = info.uri.rsplit("/", 1)[-1]
        if name in ("", ".", "..") or "\\" in name:
            raise StorageError(f"refusing object {info.uri!r}: its name is not a plain file name")
        storage.download(info.uri, folder / name)
    return folder
