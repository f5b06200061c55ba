"""One corpus job sharded over two real synth-service replicas on one store (sha256(uri) mod R):
the union of their outputs equals a single-process run byte for byte, also when one replica is
killed with -9 mid-job and restarted (issue #15 item 11)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from mvp.clients import SynthClient
from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from mvp.common.synth_config import SynthConfig
from mvp.synth.corpus import in_shard, run_corpus
from mvp.v1 import sample_pb2, synthesis_pb2
from tests.media import good_videos
from tests.procs import Proc, start_synth

pytestmark = pytest.mark.integration

CONFIG = sample_pb2.SynthesisConfig(num_frames=6, num_masked=2, num_distractors=3, samples_per_video=2)


def _objects(storage: Storage, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix`` by its path below it (the output prefix itself replaced; in the
    manifests and summary, the wall-clock timings removed: they are the only bytes a run cannot repeat)."""
    out = {}
    for info in storage.list(prefix + "/"):
        name = info.uri.removeprefix(prefix + "/")
        data = storage.get_bytes(info.uri).replace(prefix.encode(), b"PREFIX")
        if name.startswith("manifests/") or name == "summary.json":
            data = json.dumps(_untimed(json.loads(data)), sort_keys=True).encode()
        out[name] = data
    return out


def _untimed(value):
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in ("seconds", "decode_seconds", "committed_at")}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _finish(client: SynthClient, job_id: str) -> synthesis_pb2.Job:
    return list(client.watch_job(job_id, timeout=300))[-1].job


def test_two_replicas_equal_one_process(
    session_tmp: Path, s3_server: Proc, s3_settings: StoreSettings, tmp_path: Path
) -> None:
    storage = Storage(s3_settings)
    videos = good_videos(tmp_path / "v", 10, seconds=30, seed=700)
    uris = []
    for path in videos:
        uri = f"s3://mvp/shards/videos/{path.name}"
        storage.put_file(str(path), uri)
        uris.append(uri)
    assert {in_shard(u, 0, 2) for u in uris} == {True, False}  # both replicas get work
    run_corpus(
        s3_settings, "s3://mvp/shards/videos/", "s3://mvp/shards/single", SynthConfig.from_proto(CONFIG), workers=1
    )
    reference = _objects(storage, "s3://mvp/shards/single")

    for run, kill in (("plain", False), ("killed", True)):
        output = f"s3://mvp/shards/{run}"
        state = ["--state-uri", f"s3://mvp/shards/state-{run}", "--workers", "1"]
        a = start_synth(session_tmp, s3_server.ports["s3"], *state)
        b = start_synth(
            session_tmp, s3_server.ports["s3"], *state[:1], f"s3://mvp/shards/state-{run}-b", "--workers", "1"
        )
        try:
            ca, cb = SynthClient(f"127.0.0.1:{a.ports['grpc']}"), SynthClient(f"127.0.0.1:{b.ports['grpc']}")
            ja = ca.submit_job("s3://mvp/shards/videos/", output, CONFIG, shard_index=0, shard_count=2)
            jb = cb.submit_job("s3://mvp/shards/videos/", output, CONFIG, shard_index=1, shard_count=2)
            if kill:
                deadline = time.monotonic() + 120
                while cb.get_job(jb.job_id, summary_only=True).videos_ok < 1 and time.monotonic() < deadline:
                    time.sleep(0.02)
                b.popen.send_signal(signal.SIGKILL)
                b.popen.wait(10)
                b = start_synth(
                    session_tmp,
                    s3_server.ports["s3"],
                    "--state-uri",
                    f"s3://mvp/shards/state-{run}-b",
                    "--workers",
                    "1",
                )
                cb = SynthClient(f"127.0.0.1:{b.ports['grpc']}")
            assert _finish(ca, ja.job_id).state == synthesis_pb2.JOB_STATE_SUCCEEDED
            assert _finish(cb, jb.job_id).state == synthesis_pb2.JOB_STATE_SUCCEEDED
        finally:
            a.stop()
            b.stop()
        got = _objects(storage, output)
        assert got.keys() == reference.keys(), (run, sorted(got.keys() ^ reference.keys())[:5])
        different = [k for k in reference if got[k] != reference[k]]
        assert not different, (run, different[:5])
