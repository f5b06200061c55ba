"""`mvp store serve`: an embedded S3-compatible object store for local use and tests;
`mvp store create-buckets` and `mvp store upload`: the two chores of a fresh MinIO/S3 store.

It runs moto's S3 app (a real HTTP server speaking the S3 API) on loopback, behind a gate that
serves only requests signed (SigV4) with the access keys clients read from ``MVP_S3_ACCESS_KEY`` /
``MVP_S3_SECRET_KEY`` (``mvp.common.store.auth``). moto keeps objects in memory; with ``--data-dir``
every write goes through to disk before it is acknowledged: an object (PUT, multipart completion,
copy) is written to ``data_dir/<bucket>/<key>`` (a temporary file in ``data_dir/.tmp``, fsync,
rename) and a DELETE removes the file, inside the request, so an object answered 200 survives
kill -9 of the store. On start the folder is loaded back. Names the folder could not hold or load
again are refused at the request, as MinIO refuses them (a bucket name outside S3's rules, a '.' or
'..' key segment, a segment over 255 bytes, an object below an object); versioning is refused (the
folder keeps one version per key). Production uses MinIO; the code that talks to either is the
same ``minio`` SDK client.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mvp.common.settings import LoggingSettings, StoreSettings, add_settings_flags, settings_from_args
from mvp.common.store.auth import S3Refusal

if TYPE_CHECKING:
    from moto.s3.models import S3Backend

log = logging.getLogger(__name__)

REGION = "us-east-1"  # where buckets are created; clients' StoreSettings default to it
TMP = ".tmp"  # temporary files: no bucket is named so (bucket names start with a letter or digit)
MAX_KEY_BYTES = 1024  # S3's limit
MAX_SEGMENT_BYTES = 255  # a file name (NAME_MAX)
MAX_PATH_BYTES = 4000  # below PATH_MAX (4096)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")


class StoreServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MVP_STORE_", extra="ignore")

    host: str = Field(
        "127.0.0.1", description="Address to bind (loopback: the store is for this machine; it checks access keys)."
    )
    port: int = Field(9000, ge=0, le=65535, description="S3 API port (MinIO's default, 0 picks a free one).")
    data_dir: Path | None = Field(
        Path(".mvp/store"),
        description="Where objects live on disk: loaded on start, each write persisted before it is acknowledged "
        "(unset: memory only).",
    )
    buckets: str = Field("mvp", description="Comma-separated buckets to create on start.")


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="store_command", metavar="SUBCOMMAND", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the embedded S3-compatible store",
        description="Run an S3-compatible server (moto) on loopback, persisted to --data-dir.",
    )
    add_settings_flags(serve, StoreServerSettings)
    add_settings_flags(serve, StoreSettings, skip={"endpoint", "region", "secure"})  # the keys it accepts
    add_settings_flags(serve, LoggingSettings)
    serve.set_defaults(func=_serve)

    buckets = sub.add_parser(
        "create-buckets",
        help="create buckets on the configured store (idempotent)",
        description="Create each bucket on the store at MVP_S3_ENDPOINT unless it exists; retries while "
        "the store starts (the Kubernetes bucket-init Job runs this).",
    )
    buckets.add_argument("buckets", nargs="+", help="bucket names")
    buckets.add_argument("--wait-s", type=float, default=120.0, help="how long to retry an unreachable store")
    add_settings_flags(buckets, StoreSettings)
    buckets.set_defaults(func=_create_buckets)

    upload = sub.add_parser(
        "upload",
        help="upload a folder (e.g. your videos) to s3://bucket/prefix",
        description="Upload every file under SRC to DEST (s3://bucket/prefix/), keeping relative paths.",
    )
    upload.add_argument("src", type=Path, help="local folder (or one file)")
    upload.add_argument("dest", help="s3://bucket/prefix/")
    add_settings_flags(upload, StoreSettings)
    upload.set_defaults(func=_upload)


def _segment(part: str) -> str:
    """One key segment as a file name that never leaves its folder ('.', '..', '' and '%' are escaped;
    everything else is kept, so ordinary keys are ordinary paths)."""
    if part in ("", ".", ".."):
        return "%" + {"": "E", ".": "D", "..": "DD"}[part]
    return part.replace("%", "%%")


def _unsegment(name: str) -> str:
    return {"%E": "", "%D": ".", "%DD": ".."}.get(name, name.replace("%%", "%"))


def object_path(data_dir: Path, bucket: str, key: str) -> Path:
    return data_dir.joinpath(bucket, *(_segment(p) for p in key.split("/")))


def bucket_name_problem(name: str) -> str | None:
    """Why S3 (and so this store) refuses ``name`` as a bucket name, or None."""
    if not _BUCKET.fullmatch(name) or any(s in name for s in ("..", ".-", "-.")):
        return "3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit"
    if _IPV4.fullmatch(name):
        return "a bucket name must not look like an IP address"
    if name.startswith("xn--") or name.endswith(("-s3alias", "--ol-s3")):
        return "'xn--', '-s3alias' and '--ol-s3' are reserved"
    return None


def key_problem(key: str) -> tuple[str, str] | None:
    """The S3 error code and reason for a key the data folder could not hold and load back (MinIO
    refuses the same keys), or None."""
    try:
        os.fsencode(key)
    except UnicodeEncodeError:
        return "XMinioInvalidObjectName", "a key must be UTF-8"
    if len(os.fsencode(key)) > MAX_KEY_BYTES:
        return "KeyTooLongError", f"a key is at most {MAX_KEY_BYTES} bytes (UTF-8)"
    if "\x00" in key:
        return "XMinioInvalidObjectName", "a key cannot contain NUL"
    for part in key.split("/"):
        if part in (".", ".."):
            return "XMinioInvalidObjectName", "a key cannot have a '.' or '..' segment"
        if len(os.fsencode(_segment(part))) > MAX_SEGMENT_BYTES:
            return "KeyTooLongError", f"each '/'-separated segment of a key is at most {MAX_SEGMENT_BYTES} bytes"
    return None


def _refuse_bad_key(key: str) -> None:
    problem = key_problem(key)
    if problem:
        raise S3Refusal(400, problem[0], f"{problem[1]}: {key[:80]!r}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _disk_error(what: str, exc: OSError) -> S3Refusal:
    log.error("data folder write failed", extra={"object": what, "error": str(exc)})
    return S3Refusal(500, "InternalError", f"the store could not write {what} to its data folder ({exc.strerror})")


class DataFolder:
    """The on-disk side of the store: ``root/<bucket>/<key>`` (segments escaped by ``object_path``),
    temporary files in ``root/.tmp``. Every change is fsynced (file, then its folder) before the
    request that made it is answered."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / TMP

    def reset_tmp(self) -> None:
        """Empties ``.tmp`` (what a killed store was writing was never acknowledged)."""
        if self.tmp.is_dir() and not self.tmp.is_symlink():
            shutil.rmtree(self.tmp)
        else:
            self.tmp.unlink(missing_ok=True)
        self._make_dirs(self.tmp)

    def target(self, bucket: str, key: str) -> Path:
        """Where ``key`` goes; refuses (409/400, as MinIO does) a key below an object or above other
        keys, since one path cannot be a file and a folder at once."""
        path = object_path(self.root, bucket, key)
        if len(os.fsencode(path)) > MAX_PATH_BYTES:
            raise S3Refusal(400, "KeyTooLongError", "the key is too long for the store's data folder")
        for parent in path.parents:
            if parent == self.root:
                break
            if parent.exists() and not parent.is_dir():
                raise S3Refusal(
                    400,
                    "XMinioParentIsObject",
                    f"Object-prefix is already an object, please choose a different object-prefix name: {key[:80]!r}",
                )
        if path.is_dir():
            try:
                path.rmdir()  # an empty folder left by an earlier key
            except OSError:
                raise S3Refusal(
                    409, "XMinioObjectExistsAsDirectory", f"Object name already exists as a directory: {key[:80]!r}"
                ) from None
        return path

    def stage(self, path: Path, data: bytes) -> Path:
        """Writes ``data`` to a fsynced temporary file and makes ``path``'s folders; nothing visible yet."""
        self._make_dirs(path.parent)
        fd, tmp = tempfile.mkstemp(dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp)

    def commit(self, tmp: Path, path: Path) -> None:
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def remove(self, bucket: str, key: str) -> None:
        """Deletes ``key``'s file, then the folders above it that it leaves empty."""
        if key_problem(key):
            return  # never written
        path = object_path(self.root, bucket, key)
        if not path.is_file():
            return
        path.unlink()
        _fsync_dir(path.parent)
        for parent in path.parents:
            if parent == self.root / bucket:
                break
            try:
                parent.rmdir()
            except OSError:
                break
            _fsync_dir(parent.parent)

    def add_bucket(self, bucket: str) -> None:
        self._make_dirs(self.root / bucket)

    def remove_bucket(self, bucket: str) -> None:
        """Moves the bucket's folder into ``.tmp`` (one atomic rename) and deletes it there; entries
        skipped at load go with it, so the bucket cannot come back on the next start."""
        if not (self.root / bucket).exists():
            return
        trash = self.tmp / f"bucket-{uuid.uuid4().hex}"
        os.replace(self.root / bucket, trash)
        _fsync_dir(self.root)
        shutil.rmtree(trash, ignore_errors=True)

    def reload(self, backend: S3Backend, bucket: str, key: str, put: Any) -> None:
        """Makes moto's view of ``key`` what the disk holds again (after a failed disk change)."""
        path = object_path(self.root, bucket, key)
        if not key_problem(key) and path.is_file():
            put(backend, bucket, key, path.read_bytes())
        elif key in backend.get_bucket(bucket).keys:
            backend.get_bucket(bucket).keys.pop(key)

    def _make_dirs(self, path: Path) -> None:
        missing = []
        while not path.is_dir():
            missing.append(path)
            path = path.parent
        for folder in reversed(missing):
            folder.mkdir()
            _fsync_dir(folder.parent)


def guard_backend(folder: DataFolder | None) -> None:
    """Patches moto's S3 backend (process-wide): names the data folder could not load again and
    versioning are refused before anything changes, unknown upload ids are NoSuchUpload (moto
    answers 500), and with ``folder`` every object write, delete and bucket change reaches the
    disk before moto answers; a write the disk refuses is a 500 and is not kept in memory either."""
    from moto.s3.exceptions import NoSuchUpload
    from moto.s3.models import FakeBucket, S3Backend

    put, delete, create, drop = (
        S3Backend.put_object,
        S3Backend.delete_object,
        S3Backend.create_bucket,
        S3Backend.delete_bucket,
    )
    complete, part, part_copy, start = (
        S3Backend.complete_multipart_upload,
        S3Backend.upload_part,
        S3Backend.upload_part_copy,
        S3Backend.create_multipart_upload,
    )
    lock = threading.RLock()

    def create_bucket(self, bucket_name, *args, **kwargs):
        problem = bucket_name_problem(bucket_name)
        if problem:
            raise S3Refusal(400, "InvalidBucketName", f"The specified bucket is not valid: {problem}")
        if folder is None:
            return create(self, bucket_name, *args, **kwargs)
        with lock:
            bucket = create(self, bucket_name, *args, **kwargs)
            try:
                folder.add_bucket(bucket_name)  # an empty bucket survives too
            except OSError as exc:
                drop(self, bucket_name)
                raise _disk_error(f"bucket {bucket_name}", exc) from exc
            return bucket

    def delete_bucket(self, bucket_name, *args, **kwargs):
        if folder is None:
            return drop(self, bucket_name, *args, **kwargs)
        with lock:
            bucket = drop(self, bucket_name, *args, **kwargs)  # None: not empty, nothing deleted
            if bucket is not None:
                try:
                    folder.remove_bucket(bucket_name)
                except OSError as exc:
                    create(self, bucket_name, bucket.region_name)
                    raise _disk_error(f"bucket {bucket_name}", exc) from exc
            return bucket

    def put_object(self, bucket_name, key_name, value, *args, **kwargs):
        _refuse_bad_key(key_name)
        if folder is None:
            return put(self, bucket_name, key_name, value, *args, **kwargs)
        with lock:
            self.get_bucket(bucket_name)  # NoSuchBucket before the disk is touched
            path = folder.target(bucket_name, key_name)
            try:
                tmp = folder.stage(path, bytes(value))
            except OSError as exc:
                raise _disk_error(key_name, exc) from exc
            try:
                key = put(self, bucket_name, key_name, value, *args, **kwargs)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            try:
                folder.commit(tmp, path)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                folder.reload(self, bucket_name, key_name, put)
                raise _disk_error(key_name, exc) from exc
            return key

    def delete_object(self, bucket_name, key_name, *args, **kwargs):
        if folder is None:
            return delete(self, bucket_name, key_name, *args, **kwargs)
        with lock:
            result = delete(self, bucket_name, key_name, *args, **kwargs)
            try:
                folder.remove(bucket_name, key_name)
            except OSError as exc:
                folder.reload(self, bucket_name, key_name, put)
                raise _disk_error(key_name, exc) from exc
            return result

    def create_multipart_upload(self, bucket_name, key_name, *args, **kwargs):
        _refuse_bad_key(key_name)  # at the start, not after every part was sent
        if folder is not None:
            with lock:
                folder.target(bucket_name, key_name)
        return start(self, bucket_name, key_name, *args, **kwargs)

    def known_upload(method):
        def checked(self, bucket_name, multipart_id, *args, **kwargs):
            if multipart_id not in self.get_bucket(bucket_name).multiparts:  # e.g. begun before a restart
                raise NoSuchUpload(upload_id=multipart_id)
            return method(self, bucket_name, multipart_id, *args, **kwargs)

        return checked

    def set_versioning(bucket, status):
        if status == "Enabled":
            raise S3Refusal(
                501, "NotImplemented", "the embedded store keeps one version per key: versioning is not available"
            )
        bucket.__dict__["_versioning_status"] = status

    S3Backend.create_bucket = create_bucket  # type: ignore[method-assign]
    S3Backend.delete_bucket = delete_bucket  # type: ignore[method-assign]
    S3Backend.put_object = put_object  # type: ignore[method-assign]
    S3Backend.delete_object = delete_object  # type: ignore[method-assign]
    S3Backend.create_multipart_upload = create_multipart_upload  # type: ignore[method-assign]
    S3Backend.complete_multipart_upload = known_upload(complete)  # type: ignore[method-assign]
    S3Backend.upload_part = known_upload(part)  # type: ignore[method-assign]
    S3Backend.upload_part_copy = known_upload(part_copy)  # type: ignore[method-assign]
    # every path that turns versioning on (PutBucketVersioning, a bucket created with object lock)
    # sets this attribute
    FakeBucket.versioning_status = property(  # type: ignore[assignment]
        lambda bucket: bucket.__dict__.get("_versioning_status"), set_versioning
    )


def s3_backend() -> S3Backend:
    """The moto backend requests signed with the store's keys reach (moto's default account)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


def load_snapshot(backend: S3Backend, data_dir: Path, progress_every_s: float = 5.0) -> int:
    """Loads every file under data_dir/<bucket>/<key> into moto's ``backend``. Returns the object
    count. An entry no request could have written (a bucket or key name the store refuses, a name
    not in the store's escaping, a link, a file it cannot read) is logged and skipped, never fatal.
    Logs "loading data folder" every ``progress_every_s`` while it runs (a large folder takes
    minutes; a supervisor waiting for the port can tell a slow load from a hung one)."""
    count, size = 0, 0
    if not data_dir.is_dir():
        return 0
    last = time.monotonic()

    def skip(path: Path, reason: str, key: str | None = None) -> None:
        log.warning("skipping an entry of the data folder", extra={"path": str(path), "key": key, "reason": reason})

    for bucket_dir in sorted(data_dir.iterdir()):
        if bucket_dir.name == TMP:
            continue
        if bucket_dir.is_symlink() or not bucket_dir.is_dir():
            skip(bucket_dir, "not a bucket folder")
            continue
        problem = bucket_name_problem(bucket_dir.name)
        if problem:
            skip(bucket_dir, f"invalid bucket name: {problem}")
            continue
        bucket = bucket_dir.name
        backend.create_bucket(bucket, REGION)
        for dirpath, dirnames, filenames in os.walk(bucket_dir):
            folder = Path(dirpath)
            for name in [d for d in dirnames if (folder / d).is_symlink()]:
                skip(folder / name, "a link")
            dirnames[:] = sorted(d for d in dirnames if not (folder / d).is_symlink())
            for name in sorted(filenames):
                path = folder / name
                key = "/".join(_unsegment(part) for part in path.relative_to(bucket_dir).parts)
                problem_key = key_problem(key)
                if problem_key or object_path(data_dir, bucket, key) != path:
                    skip(path, problem_key[1] if problem_key else "not a file name the store writes", key)
                    continue
                if path.is_symlink() or not path.is_file():
                    skip(path, "not a regular file", key)
                    continue
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    skip(path, f"unreadable: {exc.strerror}", key)
                    continue
                backend.put_object(bucket, key, data)
                count += 1
                size += len(data)
                if time.monotonic() - last >= progress_every_s:
                    last = time.monotonic()
                    log.info("loading data folder", extra={"objects_loaded": count, "bytes_loaded": size})
    return count


def _serve(args: argparse.Namespace) -> int:
    from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    from mvp.common.logging import configure_logging
    from mvp.common.store.auth import SigV4Gate

    configure_logging(settings_from_args(LoggingSettings, args))
    settings = settings_from_args(StoreServerSettings, args)
    keys = settings_from_args(StoreSettings, args)
    backend = s3_backend()
    folder = DataFolder(settings.data_dir) if settings.data_dir else None
    loaded = 0
    if folder:
        # Loaded before the port opens, so no client ever sees NoSuchKey for an object that is on
        # disk (a restarted store with thousands of objects takes seconds to load); loaded before
        # the backend is patched, so the load itself is not written back.
        folder.reset_tmp()
        loaded = load_snapshot(backend, folder.root)
    guard_backend(folder)
    for bucket in filter(None, (b.strip() for b in settings.buckets.split(","))):
        problem = bucket_name_problem(bucket)
        if problem:
            print(f"mvp store serve: invalid bucket name {bucket!r} in --buckets: {problem}", file=sys.stderr)
            return 2
        if bucket not in backend.buckets:
            backend.create_bucket(bucket, REGION)
    access_key, secret_key = keys.access_key.get_secret_value(), keys.secret_key.get_secret_value()
    if (access_key, secret_key) == ("minioadmin", "minioadmin"):
        log.warning("the store accepts the default access keys: set MVP_S3_ACCESS_KEY and MVP_S3_SECRET_KEY")
    # moto's S3 app alone: no other AWS service and no control API (/moto-api/reset) is reachable
    app = SigV4Gate(create_backend_app("s3"), access_key, secret_key)
    server = make_server(settings.host, settings.port, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    log.info(
        "object store listening",
        extra={"endpoint": f"http://{host}:{port}", "data_dir": str(settings.data_dir), "objects_loaded": loaded},
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()  # nothing to save: every acknowledged write is already on disk
    thread.join()
    return 0


def _create_buckets(args: argparse.Namespace) -> int:
    import time

    from urllib3.exceptions import HTTPError

    from mvp.common.storage import Storage, StorageError

    for bucket in args.buckets:
        problem = bucket_name_problem(bucket)
        if problem:
            print(f"mvp store create-buckets: invalid bucket name {bucket} ({problem})", file=sys.stderr)
            return 2
    storage = Storage(settings_from_args(StoreSettings, args))
    deadline = time.monotonic() + args.wait_s
    pending = list(args.buckets)
    while pending:
        try:
            storage.ensure_bucket(pending[0])
            log.info("bucket ready", extra={"bucket": pending.pop(0)})
        except (StorageError, HTTPError, OSError) as exc:  # the store is starting: retry until the deadline
            if time.monotonic() > deadline:
                log.error("could not create bucket", extra={"bucket": pending[0], "error": str(exc)})
                return 1
            time.sleep(2.0)
    return 0


def _upload(args: argparse.Namespace) -> int:
    from mvp.common.progress import progress
    from mvp.common.storage import Storage, is_s3, join

    if not is_s3(args.dest):
        print(f"mvp store upload: DEST must be s3://bucket/prefix, got {args.dest!r}", file=sys.stderr)
        return 2
    if not args.src.exists():
        print(f"mvp store upload: {args.src} does not exist", file=sys.stderr)
        return 2
    storage = Storage(settings_from_args(StoreSettings, args))
    files = [args.src] if args.src.is_file() else sorted(p for p in args.src.rglob("*") if p.is_file())
    base = args.src.parent if args.src.is_file() else args.src
    bar = progress(total=len(files), unit="file", desc="uploading")
    for path in files:
        storage.put_file(str(path), join(args.dest, path.relative_to(base).as_posix()))
        bar.update(1)
    bar.close()
    print(f"uploaded {len(files)} files to {args.dest}")
    return 0
