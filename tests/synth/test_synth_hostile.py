"""synth-service against hostile requests and an unlucky operator (issue #15 items 1-4): it reads
and writes only where its operator allowed, job ids cannot name files, a job that cannot be saved
frees its slot, unreadable state is quarantined instead of stopping the server, and workers die
with a killed server."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc
import pytest

from mvp.clients import SynthClient
from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from mvp.v1 import sample_pb2, synthesis_pb2
from tests.media import good_videos
from tests.procs import Proc, start_synth, wait_for

pytestmark = pytest.mark.integration

CONFIG = sample_pb2.SynthesisConfig(num_frames=6, num_masked=2, num_distractors=3, samples_per_video=2)


@pytest.fixture
def synth(session_tmp: Path, s3_server: Proc):
    proc = start_synth(
        session_tmp, s3_server.ports["s3"], "--allowed-buckets", "mvp", "--state-uri", "s3://mvp/hostile/state"
    )
    yield proc
    proc.stop()


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


def test_requests_never_name_server_paths(synth: Proc, tmp_path: Path) -> None:
    marker = tmp_path / "pwn"
    with SynthClient(f"127.0.0.1:{synth.ports['grpc']}") as client:
        cases = {
            "local input": lambda: client.submit_job("/etc/hostname", "s3://mvp/hostile/out", CONFIG),
            "local output": lambda: client.submit_job("s3://mvp/hostile/in/", str(marker), CONFIG),
            "unary local video": lambda: client.synthesize_video("/etc/hostname", "s3://mvp/hostile/out", CONFIG),
            "unary local output": lambda: client.synthesize_video("s3://mvp/x.mp4", str(marker), CONFIG),
            "dot-dot key": lambda: client.submit_job("s3://mvp/../other/x/", "s3://mvp/hostile/out", CONFIG),
            "other bucket": lambda: client.submit_job("s3://corpus/videos/", "s3://mvp/hostile/out", CONFIG),
            "file scheme": lambda: client.submit_job("file:///etc/", "s3://mvp/hostile/out", CONFIG),
        }
        codes = {name: _code(call) for name, call in cases.items()}
        assert codes == {
            "local input": grpc.StatusCode.PERMISSION_DENIED,
            "local output": grpc.StatusCode.PERMISSION_DENIED,
            "unary local video": grpc.StatusCode.PERMISSION_DENIED,
            "unary local output": grpc.StatusCode.PERMISSION_DENIED,
            "dot-dot key": grpc.StatusCode.INVALID_ARGUMENT,
            "other bucket": grpc.StatusCode.PERMISSION_DENIED,
            "file scheme": grpc.StatusCode.INVALID_ARGUMENT,
        }
        clip = sample_pb2.SynthesisConfig(num_frames=6, num_masked=2, embedder="clip:/etc")
        assert (
            _code(lambda: client.submit_job("s3://mvp/in/", "s3://mvp/out", clip)) == grpc.StatusCode.PERMISSION_DENIED
        )
        assert not marker.exists()


def test_job_ids_are_validated_and_failures_free_their_slots(synth: Proc, s3_settings: StoreSettings) -> None:
    with SynthClient(f"127.0.0.1:{synth.ports['grpc']}") as client:
        for bad in ("../x/escaped", "a/b", ".hidden", "x" * 200):
            code = _code(
                lambda b=bad: client.submit_job("s3://mvp/hostile/in/", "s3://mvp/hostile/out", CONFIG, job_id=b)
            )
            assert code == grpc.StatusCode.INVALID_ARGUMENT, bad
        # no slot was taken by any rejected submission: max_jobs (4) real jobs are still accepted
        for i in range(4):
            job = client.submit_job(f"s3://mvp/hostile/empty{i}/", f"s3://mvp/hostile/out{i}", CONFIG, job_id=f"ok-{i}")
            assert job.job_id == f"ok-{i}"
    assert not any("escaped" in info.uri for info in Storage(s3_settings).list("s3://mvp/"))


def test_unreadable_state_is_quarantined_and_the_server_starts(
    session_tmp: Path, s3_server: Proc, s3_settings: StoreSettings
) -> None:
    storage = Storage(s3_settings)
    storage.put_bytes("s3://mvp/broken/state/job-truncated.json", b'{"job_id": "job-truncated", "inp')
    proc = start_synth(session_tmp, s3_server.ports["s3"], "--state-uri", "s3://mvp/broken/state")
    try:
        with SynthClient(f"127.0.0.1:{proc.ports['grpc']}") as client:
            job = client.get_job("job-truncated", summary_only=True)
        assert job.state == synthesis_pb2.JOB_STATE_FAILED and "unreadable job state" in job.error
        assert "unreadable job state quarantined" in proc.log()
        assert storage.exists("s3://mvp/broken/state/quarantine/job-truncated.json")
        assert not storage.exists("s3://mvp/broken/state/job-truncated.json")
    finally:
        proc.stop()


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def test_workers_die_with_a_killed_server(
    session_tmp: Path, s3_server: Proc, s3_settings: StoreSettings, tmp_path: Path
) -> None:
    storage = Storage(s3_settings)
    for path in good_videos(tmp_path / "v", 6, seconds=40, seed=900):
        storage.put_file(str(path), f"s3://mvp/orphans/videos/{path.name}")
    proc = start_synth(session_tmp, s3_server.ports["s3"], "--workers", "2")
    client = SynthClient(f"127.0.0.1:{proc.ports['grpc']}")
    client.submit_job("s3://mvp/orphans/videos/", "s3://mvp/orphans/out", CONFIG)
    server = proc.popen.pid
    wait_for(lambda: len({g for c in _children(server) for g in _children(c)}) >= 1, 60, "pool workers")
    workers = {g for c in _children(server) for g in _children(c)} | _children(server)
    proc.popen.send_signal(signal.SIGKILL)
    proc.popen.wait(10)

    def all_gone() -> bool:
        alive = set()
        for pid in workers:
            try:
                os.kill(pid, 0)
                alive.add(pid)
            except ProcessLookupError:
                pass
        return not alive

    wait_for(all_gone, 15, "workers to exit after their server")
    client.close()
    time.sleep(0.1)
