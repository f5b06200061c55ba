"""Random bytes and random protobuf requests at every synth-service method: never UNKNOWN /
INTERNAL, no file written outside the store, and the server is alive afterwards (issue #15 item 9)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mvp.clients import SynthClient
from mvp.v1 import sample_pb2, synthesis_pb2
from tests.fuzz import CLIENT_CODES, grpc_code
from tests.procs import Proc, start_synth

pytestmark = pytest.mark.integration

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
uris = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["s3://mvp/", "s3://mvp/../x/", "/etc/", "s3://", "s3:///x", "file:///etc", "s3://mvp/a//b"]),
)
configs = st.builds(
    sample_pb2.SynthesisConfig,
    fps=st.floats(allow_nan=True),
    num_frames=st.integers(-(2**31), 2**31 - 1),
    num_masked=st.integers(-5, 40),
    embedder=st.text(max_size=20),
    image_format=st.text(max_size=8),
)
METHODS = {
    "SynthesizeVideo": (
        "unary_unary",
        st.builds(synthesis_pb2.SynthesizeVideoRequest, video_uri=uris, output_uri=uris, config=configs),
    ),
    "SubmitJob": (
        "unary_unary",
        st.builds(
            synthesis_pb2.SubmitJobRequest,
            input_uri=uris,
            output_uri=uris,
            config=configs,
            job_id=st.text(max_size=30),
            shard_index=st.integers(-3, 3),
            shard_count=st.integers(-3, 3),
        ),
    ),
    "GetJob": ("unary_unary", st.builds(synthesis_pb2.GetJobRequest, job_id=st.text(max_size=30))),
    "ListJobs": ("unary_unary", st.just(synthesis_pb2.ListJobsRequest())),
    "WatchJob": ("unary_stream", st.builds(synthesis_pb2.WatchJobRequest, job_id=st.text(max_size=30))),
    "CancelJob": ("unary_unary", st.builds(synthesis_pb2.CancelJobRequest, job_id=st.text(max_size=30))),
}


@pytest.fixture(scope="module")
def synth(session_tmp: Path, s3_server: Proc):
    proc = start_synth(session_tmp, s3_server.ports["s3"], "--allowed-buckets", "mvp")
    yield proc
    proc.stop()


@FUZZ
@given(
    method=st.sampled_from(sorted(METHODS)),
    data=st.data(),
)
def test_every_method_answers_client_errors_only(synth: Proc, method: str, data) -> None:
    kind, messages = METHODS[method]
    payload = data.draw(st.one_of(st.binary(max_size=256), messages.map(lambda m: m.SerializeToString())))
    with grpc.insecure_channel(f"127.0.0.1:{synth.ports['grpc']}") as channel:
        code = grpc_code(channel, f"/mvp.v1.SynthesisService/{method}", payload, kind=kind)
    assert code in CLIENT_CODES | {grpc.StatusCode.DEADLINE_EXCEEDED}, (method, code)


def test_alive_after_fuzz(synth: Proc) -> None:
    with SynthClient(f"127.0.0.1:{synth.ports['grpc']}") as client:
        client.wait_healthy()
        client.list_jobs()
    assert "Traceback" not in synth.log()
