"""Random bytes, JSON and protobuf at every reward-service endpoint: never a 5xx / UNKNOWN /
INTERNAL, and the server is alive afterwards (issue #15 item 9)."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mvp.clients import RewardClient
from mvp.v1 import reward_pb2
from tests.fuzz import CLIENT_CODES, bodies, grpc_code, http_status
from tests.procs import Proc

pytestmark = pytest.mark.integration

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
items = st.builds(
    reward_pb2.ScoreItem,
    completion=st.text(max_size=80),
    label_json=st.one_of(st.text(max_size=80), st.just('{"answer": [1e999], "num_candidates": 2}')),
)


@FUZZ
@given(body=bodies, path=st.sampled_from(["/score", "/", "/get_reward"]))
def test_http_never_5xx(reward_server: Proc, body: bytes, path: str) -> None:
    assert http_status(f"http://127.0.0.1:{reward_server.ports['http']}{path}", body) < 500


@FUZZ
@given(
    payload=st.one_of(
        st.binary(max_size=512),
        st.lists(items, max_size=3).map(lambda xs: reward_pb2.ScoreRequest(items=xs).SerializeToString()),
    )
)
def test_grpc_never_unknown(reward_server: Proc, payload: bytes) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{reward_server.ports['grpc']}") as channel:
        assert grpc_code(channel, "/mvp.v1.RewardService/Score", payload) in CLIENT_CODES
        code = grpc_code(channel, "/mvp.v1.RewardService/ScoreStream", payload, kind="stream_stream")
        assert code in CLIENT_CODES


def test_alive_after_fuzz(reward_server: Proc) -> None:
    with RewardClient(f"127.0.0.1:{reward_server.ports['grpc']}") as client:
        client.wait_healthy()
        label = '{"answer": [2, 1], "num_candidates": 3}'
        assert client.score(["<answer>2, 1</answer>"], [label])[0].reward == 1.0
