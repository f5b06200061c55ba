"""`mvp store serve`: an embedded S3-compatible object store for local use and tests;
`mvp store create-buckets` and `mvp store upload`: the two chores of a fresh MinIO/S3 store.

It runs moto's S3 server (a real HTTP server speaking the S3 API) on loopback. moto keeps objects
in memory; with ``--data-dir`` every write goes through to disk before it is acknowledged: a PUT
(single or multipart completion, or a copy) is written to ``data_dir/<bucket>/<key>`` (temporary
file, fsync, rename) and a DELETE removes the file, inside the request, so an object answered 200
survives kill -9 of the store. On start the folder is loaded back. Production uses MinIO; the code
that talks to either is the same ``minio`` SDK client.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mvp.common.settings import LoggingSettings, StoreSettings, add_settings_flags, settings_from_args

log = logging.getLogger(__name__)


class StoreServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MVP_STORE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to bind (loopback: the store has no auth).")
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


def _client_settings(host: str, port: int) -> StoreSettings:
    return StoreSettings(endpoint=f"http://{host}:{port}")


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


def persist_writes(data_dir: Path) -> None:
    """Makes moto's S3 backend write through to ``data_dir``: every stored object (PUT, multipart
    completion, copy) and every delete reaches the disk before moto answers the request."""
    from moto.s3.models import S3Backend

    from mvp.common.storage import atomic_write

    put, delete, create = S3Backend.put_object, S3Backend.delete_object, S3Backend.create_bucket
    lock = threading.Lock()

    def create_bucket(self, bucket_name, *args, **kwargs):
        bucket = create(self, bucket_name, *args, **kwargs)
        (data_dir / bucket_name).mkdir(parents=True, exist_ok=True)  # an empty bucket survives too
        return bucket

    def put_object(self, bucket_name, key_name, value, *args, **kwargs):
        key = put(self, bucket_name, key_name, value, *args, **kwargs)
        with lock:
            atomic_write(object_path(data_dir, bucket_name, key_name), bytes(key.value), durable=True)
        return key

    def delete_object(self, bucket_name, key_name, *args, **kwargs):
        result = delete(self, bucket_name, key_name, *args, **kwargs)
        with lock:
            object_path(data_dir, bucket_name, key_name).unlink(missing_ok=True)
        return result

    S3Backend.put_object = put_object  # type: ignore[method-assign]
    S3Backend.delete_object = delete_object  # type: ignore[method-assign]
    S3Backend.create_bucket = create_bucket  # type: ignore[method-assign]


def load_snapshot(storage, data_dir: Path, progress_every_s: float = 5.0) -> int:
    """Uploads every file under data_dir/<bucket>/<key> into the store. Returns the object count.
    Logs "loading data folder" every ``progress_every_s`` while it runs (a large folder takes
    minutes; a supervisor waiting for the port can tell a slow load from a hung one)."""
    count, size = 0, 0
    if not data_dir.is_dir():
        return 0
    last = time.monotonic()
    for bucket_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        storage.ensure_bucket(bucket_dir.name)
        for path in sorted(p for p in bucket_dir.rglob("*") if p.is_file() and not p.name.endswith(".part")):
            key = "/".join(_unsegment(part) for part in path.relative_to(bucket_dir).parts)
            storage.put_file(str(path), f"s3://{bucket_dir.name}/{key}")
            count += 1
            size += path.stat().st_size
            if time.monotonic() - last >= progress_every_s:
                last = time.monotonic()
                log.info("loading data folder", extra={"objects_loaded": count, "bytes_loaded": size})
    return count


def _serve(args: argparse.Namespace) -> int:
    from moto.server import ThreadedMotoServer

    from mvp.common.logging import configure_logging
    from mvp.common.storage import Storage

    configure_logging(settings_from_args(LoggingSettings, args))
    settings = settings_from_args(StoreServerSettings, args)
    loaded = 0
    if settings.data_dir:
        # Load through a private loopback server first: the public port opens only once every stored
        # object is back, so no client ever sees NoSuchKey for an object that is on disk (a restarted
        # store with thousands of objects takes tens of seconds to load). moto's backend is shared
        # by every server in the process, so the public one serves what the private one loaded.
        loader = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        loader.start()
        try:
            loaded = load_snapshot(Storage(_client_settings(*loader.get_host_and_port())), settings.data_dir)
        finally:
            loader.stop()
        persist_writes(settings.data_dir)  # after loading: the load itself need not be written back
    server = ThreadedMotoServer(ip_address=settings.host, port=settings.port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    storage = Storage(_client_settings(host, port))
    for bucket in filter(None, (b.strip() for b in settings.buckets.split(","))):
        storage.ensure_bucket(bucket)
    log.info(
        "object store listening",
        extra={"endpoint": f"http://{host}:{port}", "data_dir": str(settings.data_dir), "objects_loaded": loaded},
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()  # nothing to save: every acknowledged write is already on disk
    return 0


def _create_buckets(args: argparse.Namespace) -> int:
    import time

    from minio.helpers import check_bucket_name
    from urllib3.exceptions import HTTPError

    from mvp.common.storage import Storage, StorageError

    for bucket in args.buckets:
        try:
            check_bucket_name(bucket)
        except ValueError as exc:
            print(f"mvp store create-buckets: {exc} (3-63 lowercase letters, digits, '.', '-')", file=sys.stderr)
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
