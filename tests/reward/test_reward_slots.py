"""The reward-service's concurrency slots against clients that hold them (issue #30 items 9, 10):
idle ScoreStreams are ended and free their slots, the HTTP port takes its slots from the gRPC
port's gate and its bodies from a byte budget (429 with Retry-After beyond either), oversize bodies
are 413, and large bodies and labels are parsed like small ones."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mvp.clients import RewardClient
from mvp.clients.channel import ClientConfig
from mvp.v1 import reward_pb2
from tests.procs import Proc, start_reward, wait_for

pytestmark = pytest.mark.integration

LABEL = json.dumps({"answer": [3, 1, 5, 2], "num_candidates": 8, "index_base": 1})
RIGHT = "<answer>3, 1, 5, 2</answer>"
TOKEN = "s3cret"


def _client(proc: Proc) -> RewardClient:
    return RewardClient(ClientConfig(target=f"127.0.0.1:{proc.ports['grpc']}", auth_token=TOKEN, max_attempts=1))


def _item(request_id: str) -> reward_pb2.ScoreStreamRequest:
    return reward_pb2.ScoreStreamRequest(
        request_id=request_id, item=reward_pb2.ScoreItem(completion=RIGHT, label_json=LABEL)
    )


class _HeldStream:
    """A ScoreStream that sends one message, reads its answer, then sends nothing until released:
    it holds a slot from its first answer on. ``outcome`` is how the stream ended."""

    def __init__(self, client: RewardClient, name: str) -> None:
        self.release = threading.Event()
        self.answered = threading.Event()
        self.outcome: tuple[grpc.StatusCode, str] | None = None
        self.thread = threading.Thread(target=self._run, args=(client, name), daemon=True)
        self.thread.start()

    def _requests(self, name: str):
        yield _item(name)
        self.release.wait(120)

    def _run(self, client: RewardClient, name: str) -> None:
        try:
            for _ in client.score_stream(self._requests(name)):
                self.answered.set()
            self.outcome = (grpc.StatusCode.OK, "")
        except grpc.RpcError as exc:
            self.outcome = (exc.code(), exc.details() or "")

    def end(self) -> None:
        self.release.set()
        self.thread.join(60)


def _score_code(client: RewardClient) -> grpc.StatusCode:
    try:
        client.score([RIGHT], [LABEL])
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _health(proc: Proc) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{proc.ports['grpc']}") as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status


def test_idle_streams_are_ended_and_free_their_slots(session_tmp: Path, request: pytest.FixtureRequest) -> None:
    """Before: idle authenticated ScoreStreams held every slot for as long as they liked, Score was
    RESOURCE_EXHAUSTED for everyone while health said SERVING. A stream that keeps sending is not
    cut, however long it lasts."""
    proc = start_reward(
        session_tmp, "--max-concurrent-rpcs", "3", "--stream-idle-s", "3", env={"MVP_REWARD_AUTH_TOKEN": TOKEN}
    )
    try:
        with _client(proc) as client:
            client.wait_healthy()
            held = [_HeldStream(client, f"idle-{i}") for i in range(3)]
            request.addfinalizer(lambda: [stream.release.set() for stream in held])
            for stream in held:
                assert stream.answered.wait(60), "the stream was never served"
            for stream in held:
                stream.thread.join(60)
                assert not stream.thread.is_alive(), "an idle stream still holds its slot"
                code, details = stream.outcome  # type: ignore[misc]
                assert code == grpc.StatusCode.CANCELLED, (code, details)
                assert "stream_idle_s" in details
            assert [_score_code(client) for _ in range(3)] == [grpc.StatusCode.OK] * 3
            assert _health(proc) == health_pb2.HealthCheckResponse.SERVING

            def busy():  # 0.1 s between messages, 4 s in all: longer than the idle limit
                for i in range(40):
                    yield _item(f"busy-{i}")
                    time.sleep(0.1)

            answers = list(client.score_stream(busy()))
            assert [a.request_id for a in answers] == [f"busy-{i}" for i in range(40)]
            assert all(a.result.reward == 1.0 for a in answers)
    finally:
        proc.stop()


def _body(n: int = 1, pad: int = 0) -> bytes:
    return json.dumps({"query": [RIGHT + " " * pad] * n, "labels": [LABEL] * n}).encode()


def _post(port: int, body: bytes, *, chunked: bool = False) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        if chunked:
            conn.request("POST", "/score", body=iter([body]), headers=headers, encode_chunked=True)
        else:
            conn.request("POST", "/score", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.headers), json.loads(response.read())
    finally:
        conn.close()


class _SlowBody:
    """An HTTP request whose headers and first half of the body are sent, the rest only on ``finish``:
    a client that has been admitted and is still uploading."""

    def __init__(self, port: int, body: bytes) -> None:
        self.body = body
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        head = (
            f"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        self.sock.sendall(head.encode() + body[: len(body) // 2])

    def finish(self) -> tuple[int, dict]:
        self.sock.sendall(self.body[len(self.body) // 2 :])
        data = b""
        while chunk := self.sock.recv(65536):
            data += chunk
        self.sock.close()
        head, _, payload = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(payload)


def test_http_takes_its_slots_from_the_grpc_gate(session_tmp: Path) -> None:
    """Before: the HTTP port had no concurrency limit at all; now both ports share
    max_concurrent_rpcs: a held gRPC stream makes /score 429 with Retry-After, an HTTP upload in
    progress makes Score RESOURCE_EXHAUSTED."""
    proc = start_reward(
        session_tmp,
        "--max-concurrent-rpcs",
        "1",
        "--stream-idle-s",
        "300",
        env={"MVP_REWARD_AUTH_TOKEN": TOKEN},
    )
    port = proc.ports["http"]
    try:
        with _client(proc) as client:
            client.wait_healthy()
            stream = _HeldStream(client, "holder")
            assert stream.answered.wait(60)
            status, headers, reply = _post(port, _body())
            assert status == 429, (status, reply)
            assert headers.get("Retry-After") == "1"
            assert "max_concurrent_rpcs=1" in reply["error"]
            stream.end()
            assert stream.outcome == (grpc.StatusCode.OK, "")
            status, _, reply = _post(port, _body())
            assert status == 200 and reply["rewards"] == [1.0]

            upload = _SlowBody(port, _body(200))
            wait_for(lambda: _score_code(client) == grpc.StatusCode.RESOURCE_EXHAUSTED, 30, "the upload's slot")
            status, reply = upload.finish()
            assert status == 200 and reply["rewards"] == [1.0] * 200
            assert _score_code(client) == grpc.StatusCode.OK
    finally:
        proc.stop()


def test_http_bodies_have_a_size_limit_and_a_shared_budget(session_tmp: Path) -> None:
    """Bodies over max_message_mb are 413, declared or chunked; while bodies of
    http_max_inflight_mb are being uploaded or scored, the next one is 429 before it is read."""
    proc = start_reward(
        session_tmp,
        "--max-message-mb",
        "1",
        "--http-max-inflight-mb",
        "1",
        env={"MVP_REWARD_AUTH_TOKEN": TOKEN},
    )
    port = proc.ports["http"]
    big = _body(1, pad=(1 << 20) + 1000)
    half = _body(1, pad=600_000)
    try:
        for chunked in (False, True):
            status, _, reply = _post(port, big, chunked=chunked)
            assert status == 413, (chunked, status, reply)
        upload = _SlowBody(port, half)

        def refused() -> bool:
            status, headers, reply = _post(port, half)
            assert status in (200, 429), reply
            return status == 429 and headers.get("Retry-After") == "1" and "http_max_inflight_mb=1" in reply["error"]

        wait_for(refused, 30, "the upload's share of the budget")
        status, reply = upload.finish()
        assert status == 200 and reply["rewards"] == [1.0]
        status, _, reply = _post(port, half)
        assert status == 200 and reply["rewards"] == [1.0]
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        (json.dumps({"query": [RIGHT] * 3000, "labels": [LABEL] * 3000}).encode(), 200, ""),
        (json.dumps({"query": [RIGHT], "labels": [LABEL], "pad": [1] * 100_000}).encode(), 200, ""),
        (b'{"query": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", 400, "not JSON"),
        (b'{"query": ["' + b"x" * 100_000 + b'\xff"], "labels": []}', 400, "not JSON"),
        (b'{"query": ["' + b"x" * 100_000 + b'"], "labels": [' + b"9" * 5000 + b"]}", 400, "not JSON"),
        (json.dumps({"query": [RIGHT], "labels": [LABEL + " " * (300 << 10)]}).encode(), 400, "exceeds"),
    ],
)
def test_large_bodies_and_labels(reward_server: Proc, payload: bytes, status: int, needle: str) -> None:
    """Bodies over 64 KiB are parsed by the scanner that hands the interpreter lock over, with the
    same answers; a label over 256 KiB of JSON is refused before it is parsed (before: parsed while
    holding the lock, whatever its length)."""
    conn = http.client.HTTPConnection("127.0.0.1", reward_server.ports["http"], timeout=60)
    conn.request("POST", "/score", body=payload, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    reply = json.loads(response.read())
    conn.close()
    assert response.status == status, reply
    if status == 200:
        assert set(reply["rewards"]) == {1.0}
    else:
        assert needle in reply["error"]
