"""synth-service's operator caps (issue #30 items 5, 11, 14): a request may not ask for more frames,
pixels or samples than the operator allows, a job file found under state_uri gets every check a
new submission gets before it runs, URIs are bounded, ListJobs always fits in one message and
finished jobs do not pile up in memory."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from mvp.clients import SynthClient
from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from mvp.common.synth_config import SynthConfig
from mvp.v1 import sample_pb2, synthesis_pb2
from tests.media import good_videos
from tests.procs import Proc, start_synth

pytestmark = pytest.mark.integration

SMALL = {"num_frames": 6, "num_masked": 2, "num_distractors": 3, "samples_per_video": 2}
CONFIG = sample_pb2.SynthesisConfig(**SMALL)


def _error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


def _finish(client: SynthClient, job_id: str) -> synthesis_pb2.Job:
    return list(client.watch_job(job_id, timeout=120))[-1].job


@pytest.fixture(scope="module")
def synth(session_tmp: Path, s3_server: Proc):
    proc = start_synth(session_tmp, s3_server.ports["s3"], "--allowed-buckets", "mvp")
    yield proc
    proc.stop()


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"fps": 30.0}, "config.fps=30.0 exceeds this server's cap of 2.0 (MVP_SYNTH_MAX_FPS)"),
        ({"image_size": 2048}, "config.image_size=2048 exceeds this server's cap of 640 (MVP_SYNTH_MAX_IMAGE_SIZE)"),
        ({"num_frames": 64}, "config.num_frames=64 exceeds this server's cap of 32 (MVP_SYNTH_MAX_NUM_FRAMES)"),
        ({"num_distractors": 32}, "(MVP_SYNTH_MAX_NUM_DISTRACTORS)"),
        ({"samples_per_video": 64}, "(MVP_SYNTH_MAX_SAMPLES_PER_VIDEO)"),
    ],
)
def test_requests_over_a_cap_are_invalid_argument(synth: Proc, fields: dict, needle: str) -> None:
    """Before: SynthesizeVideo decoded at any fps / image_size the request named (1.55 GB at fps 30,
    640 px, in the server process) and SubmitJob accepted them too."""
    config = sample_pb2.SynthesisConfig(**{**SMALL, **fields})
    with SynthClient(f"127.0.0.1:{synth.ports['grpc']}") as client:
        calls = {
            "SynthesizeVideo": lambda: client.synthesize_video("s3://mvp/caps/v.mp4", "s3://mvp/caps/out", config),
            "SubmitJob": lambda: client.submit_job("s3://mvp/caps/in/", "s3://mvp/caps/out", config),
        }
        for name, call in calls.items():
            error = _error(call)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, error.details())
            assert needle in error.details(), (name, error.details())
        assert not [j for j in client.list_jobs() if j.output_uri == "s3://mvp/caps/out"]


def test_a_config_at_the_caps_is_accepted(synth: Proc) -> None:
    at_caps = sample_pb2.SynthesisConfig(**{**SMALL, "fps": 2.0, "image_size": 640, "samples_per_video": 16})
    with SynthClient(f"127.0.0.1:{synth.ports['grpc']}") as client:
        job = client.submit_job("s3://mvp/caps/empty/", "s3://mvp/caps/out-ok", at_caps)
        assert _finish(client, job.job_id).state == synthesis_pb2.JOB_STATE_SUCCEEDED


def test_decode_ceilings_apply_over_the_config(
    session_tmp: Path, s3_server: Proc, s3_settings: StoreSettings, tmp_path: Path
) -> None:
    """max_pixels and max_decoded_frames are not request fields: the operator's values bound every
    decode whatever the config's own are (8192x8192 pixels and 3,600 frames by default)."""
    storage = Storage(s3_settings)
    (video,) = good_videos(tmp_path, 1, seconds=20, seed=310)
    storage.put_file(str(video), "s3://mvp/ceilings/v.mp4")
    for flags, check in (
        (
            ["--max-pixels", "10000"],
            lambda r: r.reason_code == "resolution_too_large" and "max_pixels=10000" in r.reason,
        ),
        (["--max-decoded-frames", "7"], lambda r: r.frames_decoded == 7),
    ):
        proc = start_synth(session_tmp, s3_server.ports["s3"], *flags)
        try:
            with SynthClient(f"127.0.0.1:{proc.ports['grpc']}") as client:
                result = client.synthesize_video("s3://mvp/ceilings/v.mp4", f"s3://mvp/ceilings/{flags[0]}", CONFIG)
            assert check(result.result), (flags, result.result)
        finally:
            proc.stop()


def _state(job_id: str, input_uri: str, output_uri: str, **config) -> bytes:
    spec = {
        "job_id": job_id,
        "input_uri": input_uri,
        "output_uri": output_uri,
        "config": SynthConfig.model_validate({**SMALL, **config}).model_dump(),
        "shard_index": 0,
        "shard_count": 0,
        "state": "JOB_STATE_RUNNING",
    }
    return json.dumps(spec).encode()


def test_resume_checks_what_a_submission_is_checked_for(
    session_tmp: Path, s3_server: Proc, s3_settings: StoreSettings, tmp_path: Path
) -> None:
    """Job files planted under state_uri. Before: each was resumed as it was, a local input and
    output outside --local-roots SUCCEEDED and a clip: model that is not the operator's was loaded."""
    storage = Storage(s3_settings)
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    good_videos(outside / "videos", 1, seconds=16, seed=320)
    state = "s3://mvp/planted/state"
    planted = {
        "job-local": _state("job-local", str(outside / "videos"), str(outside / "out")),
        "job-bucket": _state("job-bucket", "s3://corpus/videos/", "s3://mvp/planted/out-bucket"),
        "job-clip": _state("job-clip", "s3://mvp/planted/empty/", "s3://mvp/planted/out-clip", embedder="clip:/etc"),
        "job-fps": _state("job-fps", "s3://mvp/planted/empty/", "s3://mvp/planted/out-fps", fps=30.0),
        "job-long": _state("job-long", "s3://mvp/" + "a" * 5000, "s3://mvp/planted/out-long"),
        "job-ok": _state("job-ok", "s3://mvp/planted/empty/", "s3://mvp/planted/out-ok"),
    }
    for job_id, data in planted.items():
        storage.put_bytes(f"{state}/{job_id}.json", data)
    storage.put_bytes(f"{state}/job-renamed.json", _state("job-other", "s3://mvp/planted/empty/", "s3://mvp/x"))
    needles = {
        "job-local": "outside the server's local roots",
        "job-bucket": "bucket 'corpus' is not one this server serves",
        "job-clip": "MVP_SYNTH_CLIP_MODEL",
        "job-fps": "MVP_SYNTH_MAX_FPS",
        "job-long": "MVP_SYNTH_MAX_URI_BYTES",
    }
    flags = ["--state-uri", state, "--allowed-buckets", "mvp", "--local-roots", str(root)]
    proc = start_synth(session_tmp, s3_server.ports["s3"], *flags)
    try:
        with SynthClient(f"127.0.0.1:{proc.ports['grpc']}") as client:
            for job_id, needle in needles.items():
                job = client.get_job(job_id, summary_only=True)
                assert job.state == synthesis_pb2.JOB_STATE_FAILED, (job_id, job)
                assert job.error.startswith("not resumed") and needle in job.error, (job_id, job.error)
            assert _finish(client, "job-ok").state == synthesis_pb2.JOB_STATE_SUCCEEDED
            renamed = client.get_job("job-renamed", summary_only=True)
            assert renamed.state == synthesis_pb2.JOB_STATE_FAILED and "name of its file" in renamed.error
    finally:
        proc.stop()
    assert "persisted job not resumed" in proc.log()
    for job_id in needles:  # the files say so: the next start does not try them again
        assert json.loads(storage.get_bytes(f"{state}/{job_id}.json"))["state"] == "JOB_STATE_FAILED"
    proc = start_synth(session_tmp, s3_server.ports["s3"], *flags)
    proc.stop()
    assert "not resumed" not in proc.log() and "resumed unfinished jobs" not in proc.log()
    assert not (outside / "out").exists()
    assert storage.exists(f"{state}/quarantine/job-renamed.json")


def test_uris_are_bounded_and_listing_always_fits(session_tmp: Path, s3_server: Proc) -> None:
    """Before: three SubmitJobs with 1 MiB URIs made every ListJobs fail (over 4 MiB) until a restart."""
    proc = start_synth(session_tmp, s3_server.ports["s3"], "--allowed-buckets", "mvp")
    huge = "s3://mvp/" + "a" * (1 << 20)
    try:
        with SynthClient(f"127.0.0.1:{proc.ports['grpc']}") as client:
            for i in range(3):
                error = _error(lambda i=i: client.submit_job(huge + str(i), huge + "/out", CONFIG))
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "input_uri: 1048586 bytes exceeds this server's limit of 4096" in error.details()
            error = _error(lambda: client.synthesize_video(huge, "s3://mvp/out", CONFIG))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "MVP_SYNTH_MAX_URI_BYTES" in error.details()
            assert client.list_jobs() == []
    finally:
        proc.stop()
    # an operator who allows long URIs still gets a ListJobs that fits: the rest is counted, not sent
    proc = start_synth(session_tmp, s3_server.ports["s3"], "--allowed-buckets", "mvp", "--max-uri-bytes", "2000000")
    try:
        with SynthClient(f"127.0.0.1:{proc.ports['grpc']}") as client:
            for i in range(3):
                client.submit_job(huge + str(i), "s3://mvp/long/out", CONFIG)
            response, call = client.stub.ListJobs.with_call(synthesis_pb2.ListJobsRequest(), timeout=30)
            omitted = dict(call.trailing_metadata())["mvp-jobs-omitted"]
            assert len(response.jobs) >= 1 and len(response.jobs) + int(omitted) == 3
    finally:
        proc.stop()


def test_finished_jobs_are_evicted_beyond_the_bound(
    session_tmp: Path, s3_server: Proc, s3_settings: StoreSettings
) -> None:
    """Before: every finished job stayed in memory (2,000 after 10 s of submissions)."""
    state = "s3://mvp/evict/state"
    proc = start_synth(
        session_tmp, s3_server.ports["s3"], "--allowed-buckets", "mvp", "--state-uri", state, "--max-finished-jobs", "3"
    )
    try:
        with SynthClient(f"127.0.0.1:{proc.ports['grpc']}") as client:
            ids = []
            for i in range(8):
                job = client.submit_job(f"s3://mvp/evict/empty{i}/", f"s3://mvp/evict/out{i}", CONFIG, job_id=f"e-{i}")
                assert _finish(client, job.job_id).state in (
                    synthesis_pb2.JOB_STATE_SUCCEEDED,
                    synthesis_pb2.JOB_STATE_FAILED,
                )
                ids.append(job.job_id)
            assert [j.job_id for j in client.list_jobs()] == ids[::-1][:3]  # the newest, newest first
            error = _error(lambda: client.get_job(ids[0]))
            assert error.code() == grpc.StatusCode.NOT_FOUND and "max_finished_jobs" in error.details()
            assert client.get_job(ids[-1]).job_id == ids[-1]
    finally:
        proc.stop()
    storage = Storage(s3_settings)
    assert all(storage.exists(f"{state}/{job_id}.json") for job_id in ids)  # forgotten in memory only
