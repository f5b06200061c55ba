"""A checkpoint named by an s3:// URI becomes a local folder: reused while unchanged, downloaded again
when the objects under the URI change, and a bounded cache (real S3 server process)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mvp.common.storage import Storage
from mvp.model.resolve import resolve_model

pytestmark = pytest.mark.integration


def put_checkpoint(storage: Storage, uri: str, weights: bytes) -> None:
    storage.put_bytes(uri + "/config.json", b'{"model_type": "qwen2_5_vl"}')
    storage.put_bytes(uri + "/model.safetensors", weights)


def test_s3_checkpoint_is_reused_until_rewritten_and_the_cache_stays_bounded(s3_settings, tmp_path):
    storage = Storage(s3_settings)
    run = f"s3://mvp/resolve-{uuid.uuid4().hex[:8]}"
    cache = tmp_path / "cache"
    put_checkpoint(storage, f"{run}/step-1", b"first")

    first = resolve_model(f"{run}/step-1", storage, cache, keep=2)
    assert (first / "model.safetensors").read_bytes() == b"first"
    marker = first / "served-from-cache"
    marker.write_text("")
    assert resolve_model(f"{run}/step-1", storage, cache, keep=2) == first and marker.exists()  # no download

    # the same URI rewritten (a rerun of the same config, another store): never the stale copy
    put_checkpoint(storage, f"{run}/step-1", b"second")
    again = resolve_model(f"{run}/step-1", storage, cache, keep=2)
    assert again != first and (again / "model.safetensors").read_bytes() == b"second"

    for step in (2, 3):
        put_checkpoint(storage, f"{run}/step-{step}", f"step {step}".encode())
        latest = resolve_model(f"{run}/step-{step}", storage, cache, keep=2)
    kept = sorted(p.name for p in cache.iterdir())
    assert len(kept) == 2 and latest.name in kept and not first.exists() and not again.exists()
    assert not [p for p in cache.iterdir() if ".part" in p.name]


def test_concurrent_processes_build_the_tiny_model_into_one_folder(tmp_path: Path) -> None:
    code = "import sys; from pathlib import Path; from mvp.model.tiny import ensure_tiny_model; "
    code += "print(ensure_tiny_model(Path(sys.argv[1])))"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "tiny")], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0] and set(outs) == {str(tmp_path / "tiny")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
    assert (tmp_path / "tiny" / "config.json").exists() and (tmp_path / "tiny" / "model.safetensors").exists()
