"""The embedded store keeps every write it acknowledged through kill -9 (issue #15 item 10: it used
to persist only on graceful shutdown, and 1,038 acknowledged PUTs were lost)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from minio.datatypes import Part
from minio.error import S3Error

from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage, StorageError
from mvp.common.store.cli import object_path
from tests.procs import free_port, port_open, start, start_store, wait_for

pytestmark = pytest.mark.integration


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = start_store(tmp_path, data_dir)
    try:
        _write_then_kill(store, data_dir, tmp_path)
    finally:
        if store.popen.poll() is None:
            store.stop()


def _write_then_kill(store, data_dir: Path, tmp_path: Path) -> None:
    storage = Storage(StoreSettings(endpoint=f"http://127.0.0.1:{store.ports['s3']}"))
    acked: dict[str, bytes] = {}
    big = os.urandom(12 << 20)  # a multipart upload (the minio SDK splits it into 5 MiB parts)
    storage.put_bytes("s3://mvp/big/blob.bin", big)
    acked["s3://mvp/big/blob.bin"] = big
    storage.put_bytes("s3://mvp/gone.txt", b"deleted before the kill")
    storage.delete("s3://mvp/gone.txt")
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            uri, data = f"s3://mvp/stream/{i:06d}.bin", os.urandom(1000 + i % 5000)
            try:
                storage.put_bytes(uri, data)
            except Exception:  # noqa: BLE001 - the store was killed: this write was never acknowledged
                return
            acked[uri] = data
            i += 1

    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + 30
    while len(acked) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    store.popen.send_signal(signal.SIGKILL)  # mid-stream, no shutdown hook runs
    store.popen.wait(10)
    stop.set()
    writer.join(60)
    assert len(acked) >= 200

    restarted = start_store(tmp_path, data_dir)
    try:
        reader = Storage(StoreSettings(endpoint=f"http://127.0.0.1:{restarted.ports['s3']}"))
        lost = [uri for uri, data in acked.items() if not reader.exists(uri) or reader.get_bytes(uri) != data]
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged writes lost, e.g. {lost[:3]}"
        assert not reader.exists("s3://mvp/gone.txt")
    finally:
        restarted.stop()


def test_object_paths_never_leave_the_data_folder(tmp_path: Path) -> None:
    from mvp.common.store.cli import _unsegment, object_path

    for key in ("../../etc/passwd", "a/./b", "a//b", "..", "%2E%2E/x", "100%/y"):
        path = object_path(tmp_path, "mvp", key)
        assert tmp_path / "mvp" in path.parents, key
        assert "/".join(_unsegment(p) for p in path.relative_to(tmp_path / "mvp").parts) == key


def test_a_restarted_store_opens_its_port_only_when_every_object_is_back(tmp_path: Path) -> None:
    """The data folder is loaded before the S3 port opens: a client that connects to a store that
    is still loading must not get NoSuchKey for an object that is on disk (seen with 15,000 objects:
    a checkpoint looked missing for the first seconds)."""
    data_dir = tmp_path / "data"
    keys = [f"many/{i:05d}.bin" for i in range(3000)]
    for key in keys:
        path = object_path(data_dir, "mvp", key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.encode())
    port = free_port()
    args = ["store", "serve", "--port", str(port), "--buckets", "mvp", "--data-dir", str(data_dir)]
    store = start(args, tmp_path / "store.log")
    try:
        wait_for(lambda: port_open(port), 120, "store port", store.popen)
        reader = Storage(StoreSettings(endpoint=f"http://127.0.0.1:{port}"))
        assert reader.exists(f"s3://mvp/{keys[-1]}"), "the port opened before the data folder was loaded"
        assert reader.get_bytes(f"s3://mvp/{keys[0]}") == keys[0].encode()
        assert "objects_loaded=3000" in store.log()
    finally:
        store.stop()


def test_loading_a_data_folder_reports_progress(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A large data folder takes minutes to load; the store says how far it got while it loads, so a
    supervisor waiting for its port can tell a slow load from a hung one."""
    from moto.s3.models import S3Backend

    from mvp.common.store.cli import load_snapshot

    sizes = [10, 200, 3000]
    for i, size in enumerate(sizes):
        path = object_path(tmp_path / "data", "progress", f"obj-{i}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    backend = S3Backend("us-east-1", "000000000030")  # a private one, not the process's default
    with caplog.at_level("INFO", logger="mvp.common.store.cli"):
        assert load_snapshot(backend, tmp_path / "data", progress_every_s=0) == 3
    assert bytes(backend.get_object("progress", "obj-2").value) == b"x" * 3000
    lines = [r for r in caplog.records if r.getMessage() == "loading data folder"]
    assert [r.objects_loaded for r in lines] == [1, 2, 3]
    assert [r.bytes_loaded for r in lines] == [10, 210, 3210]


def test_edge_cases_of_keys_survive_kill_9_or_are_refused_before_they_are_acknowledged(tmp_path: Path) -> None:
    """Issue #30 item 7: an answered write is on disk, or the request was refused (4xx) and the
    object is not served from memory either; what the store answered before kill -9 is what the
    restarted store serves, object for object."""
    from minio.commonconfig import ENABLED, CopySource
    from minio.versioningconfig import VersioningConfig

    data_dir = tmp_path / "data"
    store = start_store(tmp_path, data_dir)
    try:
        storage = Storage(StoreSettings(endpoint=f"http://127.0.0.1:{store.ports['s3']}"))
        client = storage.client
        expected = {
            "weights.part": b"a key that ends like a temporary file",
            ".x.abc.part": b"and one named like the old temporary files",
            "a": b"an object that is also a prefix below",
            "d/e": b"an object below a prefix that is also written as an object",
            "100%/%E": b"escapes",
            "kept/old": b"overwritten",
        }
        for key, data in expected.items():
            storage.put_bytes(f"s3://mvp/{key}", data)
        storage.put_bytes("s3://mvp/kept/old", b"the second write wins")
        expected["kept/old"] = b"the second write wins"
        client.copy_object("mvp", "kept/copy", CopySource("mvp", "a"))
        expected["kept/copy"] = expected["a"]
        for key, code in (("a/b", "XMinioParentIsObject"), ("d", "XMinioObjectExistsAsDirectory")):
            with pytest.raises(StorageError, match=code):
                storage.put_bytes(f"s3://mvp/{key}", b"refused")
            assert not storage.exists(f"s3://mvp/{key}"), f"{key} was refused but is served from memory"
        with pytest.raises(StorageError, match="KeyTooLongError"):
            storage.put_bytes("s3://mvp/long/" + "s" * 300, b"a segment over 255 bytes")
        assert [i.uri for i in storage.list("s3://mvp/long/")] == []
        storage.put_bytes("s3://mvp/z/y", b"deleted, then its prefix written")
        storage.delete("s3://mvp/z/y")
        storage.put_bytes("s3://mvp/z", b"its prefix, now an object")
        expected["z"] = b"its prefix, now an object"
        # versions would live only in memory: versioning is refused instead of lost on restart
        with pytest.raises(S3Error) as err:
            client.set_bucket_versioning("mvp", VersioningConfig(ENABLED))
        assert err.value.code == "NotImplemented"
        assert client.get_bucket_versioning("mvp").status != "Enabled"
        storage.ensure_bucket("removed")
        client.remove_bucket("removed")

        store.popen.send_signal(signal.SIGKILL)
        store.popen.wait(10)
        store = start_store(tmp_path, data_dir)
        reader = Storage(StoreSettings(endpoint=f"http://127.0.0.1:{store.ports['s3']}"))
        served = {i.uri.removeprefix("s3://mvp/"): reader.get_bytes(i.uri) for i in reader.list("s3://mvp/")}
        assert served == expected
        assert [b.name for b in reader.client.list_buckets()] == ["mvp"]
    finally:
        store.stop()


def test_a_multipart_upload_cut_by_a_restart_is_no_such_upload(tmp_path: Path) -> None:
    """Unfinished uploads live in memory: after kill -9 their parts are gone, and the client is told
    so with S3's NoSuchUpload (404) and starts again, instead of a 500 it would retry."""
    data_dir = tmp_path / "data"
    store = start_store(tmp_path, data_dir)
    try:
        client = Storage(StoreSettings(endpoint=f"http://127.0.0.1:{store.ports['s3']}")).client
        part = os.urandom(5 << 20)
        upload_id = client._create_multipart_upload("mvp", "cut/blob.bin", {})
        etag = client._upload_part("mvp", "cut/blob.bin", part, None, upload_id, 1)
        store.popen.send_signal(signal.SIGKILL)
        store.popen.wait(10)
        store = start_store(tmp_path, data_dir)
        storage = Storage(StoreSettings(endpoint=f"http://127.0.0.1:{store.ports['s3']}"))
        client = storage.client
        with pytest.raises(S3Error) as err:
            client._upload_part("mvp", "cut/blob.bin", part, None, upload_id, 2)
        assert (err.value.code, err.value.response.status) == ("NoSuchUpload", 404)
        with pytest.raises(S3Error) as err:
            client._complete_multipart_upload("mvp", "cut/blob.bin", upload_id, [Part(1, etag)])
        assert (err.value.code, err.value.response.status) == ("NoSuchUpload", 404)
        assert not storage.exists("s3://mvp/cut/blob.bin")
        big = os.urandom(11 << 20)  # the client starts again: a whole multipart upload
        storage.put_bytes("s3://mvp/cut/blob.bin", big)
        store.popen.send_signal(signal.SIGKILL)
        store.popen.wait(10)
        store = start_store(tmp_path, data_dir)
        reader = Storage(StoreSettings(endpoint=f"http://127.0.0.1:{store.ports['s3']}"))
        assert reader.get_bytes("s3://mvp/cut/blob.bin") == big
    finally:
        store.stop()
