"""`mvp store create-buckets`, `mvp store upload` and `mvp health` against real servers: the chores
the Kubernetes bucket-init Job, the deploy guide and init containers rely on."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from tests.procs import MVP, Proc, free_port

pytestmark = pytest.mark.integration


def mvp(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*MVP, *args], capture_output=True, text=True, timeout=timeout)


def test_create_buckets_is_idempotent(s3_server: Proc, s3_settings: StoreSettings) -> None:
    endpoint = f"http://127.0.0.1:{s3_server.ports['s3']}"
    for _ in range(2):
        out = mvp("store", "create-buckets", "cli-a", "cli-b", "--endpoint", endpoint)
        assert out.returncode == 0, out.stderr
    storage = Storage(s3_settings)
    assert storage.bucket_exists("cli-a") and storage.bucket_exists("cli-b")


def test_create_buckets_gives_up_on_an_unreachable_store() -> None:
    out = mvp(
        "store", "create-buckets", "never-created", "--endpoint", f"http://127.0.0.1:{free_port()}", "--wait-s", "1"
    )
    assert out.returncode == 1 and "could not create bucket" in out.stderr


def test_upload_keeps_relative_paths(s3_server: Proc, s3_settings: StoreSettings, tmp_path: Path) -> None:
    (tmp_path / "videos" / "sub").mkdir(parents=True)
    (tmp_path / "videos" / "a.mp4").write_bytes(b"a")
    (tmp_path / "videos" / "sub" / "b.mp4").write_bytes(b"bb")
    endpoint = f"http://127.0.0.1:{s3_server.ports['s3']}"
    Storage(s3_settings).ensure_bucket("mvp")
    out = mvp("store", "upload", str(tmp_path / "videos"), "s3://mvp/uploaded/", "--endpoint", endpoint)
    assert out.returncode == 0, out.stderr
    storage = Storage(s3_settings)
    assert storage.get_bytes("s3://mvp/uploaded/sub/b.mp4") == b"bb"
    assert mvp("store", "upload", str(tmp_path / "missing"), "s3://mvp/x/").returncode == 2


def test_health_waits_for_serving(reward_server: Proc) -> None:
    out = mvp("health", f"127.0.0.1:{reward_server.ports['grpc']}", "--timeout-s", "20")
    assert out.returncode == 0 and "SERVING" in out.stdout
    out = mvp("health", f"127.0.0.1:{reward_server.ports['grpc']}", f"127.0.0.1:{free_port()}", "--timeout-s", "2")
    assert out.returncode == 1 and "is not serving" in out.stderr


def test_create_buckets_rejects_an_invalid_name() -> None:
    out = mvp("store", "create-buckets", "x", "--endpoint", "http://127.0.0.1:1")
    assert out.returncode == 2 and "invalid bucket name x" in out.stderr
