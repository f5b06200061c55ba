"""synth-service as a real process over a real S3-compatible server process (moto over HTTP),
talking the S3 API through the minio SDK: unary synthesis, corpus jobs with bad videos mixed in,
progress streaming, missing buckets, and kill -9 in the middle of a job followed by a resume."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from mvp.clients import SynthClient
from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from mvp.common.synth_config import SynthConfig
from mvp.synth.corpus import run_corpus
from mvp.v1 import sample_pb2, synthesis_pb2
from tests.media import bad_inputs, good_videos
from tests.procs import MVP, Proc, start_synth

pytestmark = pytest.mark.integration

CONFIG = sample_pb2.SynthesisConfig(num_frames=6, num_masked=2, num_distractors=3, samples_per_video=2)


def upload(storage: Storage, files: list[Path], prefix: str) -> None:
    for path in files:
        storage.put_file(str(path), f"{prefix}/{path.name}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("svc-corpus")
    good = good_videos(root / "good", 4, seed=100)
    bad = list(bad_inputs(root / "bad", good[0]).values())
    return {"good": good, "bad": bad}


@pytest.fixture
def synth(session_tmp: Path, s3_server: Proc):
    proc = start_synth(session_tmp, s3_server.ports["s3"])
    yield proc
    proc.stop()


def test_health_reflection_and_unary_synthesis(
    synth: Proc, s3_settings: StoreSettings, corpus: dict[str, list[Path]]
) -> None:
    storage = Storage(s3_settings)
    upload(storage, corpus["good"][:1], "s3://mvp/unary/videos")
    channel = grpc.insecure_channel(f"127.0.0.1:{synth.ports['grpc']}")
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    assert "mvp.v1.SynthesisService" in set(ProtoReflectionDescriptorDatabase(channel).get_services())
    with SynthClient(f"127.0.0.1:{synth.ports['grpc']}") as client:
        uri = f"s3://mvp/unary/videos/{corpus['good'][0].name}"
        response = client.synthesize_video(uri, "s3://mvp/unary/out", CONFIG)
        assert response.result.status == synthesis_pb2.VIDEO_STATUS_OK
        assert len(response.samples) == 2
        sample = response.samples[0]
        assert all(storage.exists(f.uri) for f in [*sample.context_frames, *sample.candidates])
        missing = client.synthesize_video("s3://mvp/unary/videos/nope.mp4", "s3://mvp/unary/out", CONFIG)
        assert missing.result.status == synthesis_pb2.VIDEO_STATUS_FAILED
        assert missing.result.reason_code == "read_error"
        with pytest.raises(grpc.RpcError) as err:
            client.synthesize_video(uri, "s3://mvp/unary/out", sample_pb2.SynthesisConfig(num_frames=3, num_masked=3))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_corpus_job_with_bad_videos(synth: Proc, s3_settings: StoreSettings, corpus: dict[str, list[Path]]) -> None:
    storage = Storage(s3_settings)
    upload(storage, corpus["good"] + corpus["bad"], "s3://mvp/mixed/videos")
    with SynthClient(f"127.0.0.1:{synth.ports['grpc']}") as client:
        job = client.submit_job("s3://mvp/mixed/videos/", "s3://mvp/mixed/out", CONFIG)
        updates = list(client.watch_job(job.job_id, timeout=120))
        final = client.get_job(job.job_id)
    assert updates[-1].job.state == synthesis_pb2.JOB_STATE_SUCCEEDED
    assert final.videos_total == 10 and final.videos_ok == 4
    assert final.videos_skipped + final.videos_failed == 6
    assert final.samples_written == 8
    assert all(r.reason for r in final.results if r.status != synthesis_pb2.VIDEO_STATUS_OK)
    summary = json.loads(storage.get_bytes("s3://mvp/mixed/out/summary.json"))
    assert summary["totals"]["ok"] == 4 and summary["totals"]["samples"] == 8
    rows = storage.get_bytes("s3://mvp/mixed/out/openrlhf.jsonl").decode().splitlines()
    assert len(rows) == 8 and all(img.startswith("s3://mvp/mixed/out/") for img in json.loads(rows[0])["images"])
    text = urllib.request.urlopen(f"http://127.0.0.1:{synth.ports['metrics']}/metrics", timeout=5).read().decode()
    assert 'mvp_synth_videos_total{reason="empty_file",status="failed"}' in text
    assert "mvp_synth_samples_written_total" in text and "mvp_synth_decode_seconds_bucket" in text


def test_cli_runs_a_corpus_job_on_the_service(synth: Proc, s3_settings: StoreSettings, corpus) -> None:
    """`mvp synth run --synth-addr`: the service does the work (with its own store credentials), the
    CLI follows the job; a failed job exits non-zero and says why."""
    upload(Storage(s3_settings), corpus["good"][:2], "s3://mvp/cli/videos")
    base = [*MVP, "synth", "run", "--synth-addr", f"127.0.0.1:{synth.ports['grpc']}", "--num-frames", "6"]
    ok = subprocess.run(
        [*base, "--input", "s3://mvp/cli/videos/", "--output", "s3://mvp/cli/out"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout.strip().splitlines()[-1])
    assert summary["state"] == "JOB_STATE_SUCCEEDED" and summary["ok"] == 2 and summary["samples"] > 0
    assert Storage(s3_settings).exists("s3://mvp/cli/out/openrlhf.jsonl")
    bad = subprocess.run(
        [*base, "--input", "s3://no-such-bucket/v/", "--output", "s3://mvp/cli/bad"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "no-such-bucket" in bad.stderr


def test_missing_bucket_fails_the_job_clearly(synth: Proc) -> None:
    with SynthClient(f"127.0.0.1:{synth.ports['grpc']}") as client:
        job = client.submit_job("s3://no-such-bucket/videos/", "s3://mvp/x/out", CONFIG)
        final = list(client.watch_job(job.job_id, timeout=60))[-1].job
        assert final.state == synthesis_pb2.JOB_STATE_FAILED
        assert "no-such-bucket" in final.error
        job = client.submit_job("s3://mvp/mixed/videos/", "s3://missing-out/x", CONFIG)
        final = list(client.watch_job(job.job_id, timeout=60))[-1].job
        assert final.state == synthesis_pb2.JOB_STATE_FAILED and "missing-out" in final.error
        with pytest.raises(grpc.RpcError) as err:
            client.get_job("job-unknown")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_kill_and_resume_gives_exactly_the_uninterrupted_dataset(
    session_tmp: Path, s3_server: Proc, s3_settings: StoreSettings, tmp_path: Path
) -> None:
    storage = Storage(s3_settings)
    videos = good_videos(tmp_path / "v", 12, seconds=40, seed=500)
    upload(storage, videos, "s3://mvp/resume/videos")
    config = SynthConfig.from_proto(CONFIG)
    # the reference: the same corpus, uninterrupted
    run_corpus(s3_settings, "s3://mvp/resume/videos/", "s3://mvp/resume/reference", config, workers=1)
    reference = storage.get_bytes("s3://mvp/resume/reference/samples.jsonl").decode()

    args = ["--workers", "1", "--state-uri", "s3://mvp/resume/state"]
    proc = start_synth(session_tmp, s3_server.ports["s3"], *args)
    client = SynthClient(f"127.0.0.1:{proc.ports['grpc']}")
    job = client.submit_job("s3://mvp/resume/videos/", "s3://mvp/resume/out", CONFIG)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = client.get_job(job.job_id, summary_only=True)
        if done.videos_ok >= 2:
            break
        time.sleep(0.02)
    proc.popen.send_signal(signal.SIGKILL)
    proc.popen.wait(10)
    assert 2 <= done.videos_ok < 12, "the kill must land in the middle of the job"

    restarted = start_synth(session_tmp, s3_server.ports["s3"], *args)
    try:
        client = SynthClient(f"127.0.0.1:{restarted.ports['grpc']}")
        final = list(client.watch_job(job.job_id, timeout=180))[-1].job
        assert final.state == synthesis_pb2.JOB_STATE_SUCCEEDED
        assert final.videos_ok == 12
        assert "resumed unfinished jobs" in restarted.log()
    finally:
        restarted.stop()
    resumed = storage.get_bytes("s3://mvp/resume/out/samples.jsonl").decode()
    ids = [json.loads(x)["id"] for x in resumed.splitlines()]
    assert len(ids) == len(set(ids)) == 24
    assert resumed.replace("resume/out", "X") == reference.replace("resume/reference", "X")
