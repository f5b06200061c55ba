"""The reward-service as a real process on real ports: gRPC, streaming, OpenRLHF HTTP, the
reward_func bridge, limits, health, reflection, metrics and graceful shutdown."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from mvp.clients import RewardClient, ServiceUnavailableError
from mvp.clients.channel import ClientConfig
from mvp.v1 import reward_pb2, reward_pb2_grpc, sample_pb2
from tests.procs import MVP, REPO, Proc, free_port, start_reward, wait_for

pytestmark = pytest.mark.integration

LABEL = json.dumps({"answer": [3, 1, 5, 2], "num_candidates": 8, "index_base": 1})
RIGHT = "<answer>3, 1, 5, 2</answer>"


def addr(proc: Proc) -> str:
    return f"127.0.0.1:{proc.ports['grpc']}"


def test_batched_score_keeps_order_and_components(reward_server: Proc) -> None:
    completions = ["<answer>3, 1, 5, 2</answer>", "<answer>2, 5, 1, 3</answer>", "garbage", "<answer>3,3,5,2</answer>"]
    with RewardClient(addr(reward_server)) as client:
        results = client.score(completions, [LABEL] * 4)
    assert [round(r.reward, 6) for r in results] == [1.0, 0.4, 0.0, 0.0]
    assert results[1].components.ordering == 0.0
    assert results[1].components.selection == 1.0
    assert results[2].failure_reason == "no_answer_tag"
    assert results[3].failure_reason == "duplicate_index"
    assert list(results[0].parsed_answer) == [3, 1, 5, 2]
    assert not any(r.slots for r in results), "slots only when asked for"
    # per-slot credit travels over the wire: where each index is written and what it earns alone
    with RewardClient(addr(reward_server)) as client:
        results = client.score(completions, [LABEL] * 4, include_slots=True)
    slots = results[1].slots
    assert [completions[1][s.start : s.end] for s in slots] == ["2", "5", "1", "3"]
    assert [s.selected for s in slots] == [True] * 4 and not any(s.in_place for s in slots)
    assert [round(s.reward, 6) for s in slots] == [0.075] * 4
    assert sum(s.reward for s in results[0].slots) == pytest.approx(0.9)
    assert not results[2].slots


def test_structured_label_and_config_override(reward_server: Proc) -> None:
    label = sample_pb2.Label(
        answer=[1, 2], num_candidates=4, index_base=1, candidate_times_s=[10, 11, 9, 30], gap_start_s=10, gap_end_s=11
    )
    with RewardClient(addr(reward_server)) as client:
        (hard,) = client.score(["<answer>1, 3</answer>"], [label])
        (soft,) = client.score(["<answer>1, 3</answer>"], [label], reward_pb2.RewardConfig(soft=True))
        with pytest.raises(grpc.RpcError) as err:
            client.score(["x"], [label], reward_pb2.RewardConfig(format_weight=0.9))
    assert hard.components.soft == 0.0
    assert soft.components.soft > 0.0
    assert soft.reward > hard.reward
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sum to 1" in err.value.details()


def test_invalid_label_is_invalid_argument(reward_server: Proc) -> None:
    with RewardClient(addr(reward_server)) as client, pytest.raises(grpc.RpcError) as err:
        client.score(["<answer>1</answer>", "<answer>1</answer>"], [LABEL, '{"answer": [1]}'])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "items[1]" in err.value.details()
    assert "num_candidates" in err.value.details()


def test_oversized_batch_and_message_are_rejected(session_tmp: Path) -> None:
    proc = start_reward(session_tmp, "--max-batch", "8", "--max-message-mb", "1")
    try:
        client = RewardClient(ClientConfig(target=addr(proc), max_message_mb=8), chunk_size=100)
        with pytest.raises(grpc.RpcError) as err:
            client.score(["x"] * 9, [LABEL] * 9)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "max_batch" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            client.score(["x" * (2 << 20)], [LABEL])
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(client.score(["x"] * 8, [LABEL] * 8)) == 8  # still serving
    finally:
        proc.stop()


def test_health_is_never_counted_against_the_concurrency_limit(session_tmp: Path) -> None:
    """An open ScoreStream holds the only slot: Score is RESOURCE_EXHAUSTED, the health check still
    SERVING (grpc's own maximum_concurrent_rpcs rejected health checks too: a busy server failed its
    liveness probe)."""
    proc = start_reward(session_tmp, "--max-concurrent-rpcs", "1", "--stream-idle-s", "300")
    release = threading.Event()

    def held_open():
        yield reward_pb2.ScoreStreamRequest(request_id="a", item=reward_pb2.ScoreItem(completion="x", label_json=LABEL))
        release.wait(30)

    try:
        with RewardClient(addr(proc)) as client:
            client.wait_healthy()
            stream = client.score_stream(held_open())
            assert next(iter(stream)).request_id == "a"  # the stream is in flight and holds the slot
            with pytest.raises(grpc.RpcError) as err:
                client.score(["<answer>3, 1, 5</answer>"], [LABEL])
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_concurrent_rpcs=1" in err.value.details()
            with grpc.insecure_channel(addr(proc)) as channel:
                health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            release.set()
            list(stream)
            assert client.score([RIGHT], [LABEL])[0].reward == 1.0  # the slot is free again
    finally:
        release.set()
        proc.stop()


def test_large_requests_are_parsed_off_the_event_loop(reward_server: Proc) -> None:
    """Over 64 KiB a request is parsed in a worker thread: a large valid one is scored, large
    corrupt bytes are INVALID_ARGUMENT, like small ones."""
    with RewardClient(addr(reward_server)) as client:
        results = client.score([RIGHT + " " * 100] * 2000, [LABEL] * 2000)
        assert len(results) == 2000 and all(r.reward == 1.0 for r in results)
    with grpc.insecure_channel(addr(reward_server)) as channel:
        raw = channel.unary_unary("/mvp.v1.RewardService/Score")
        with pytest.raises(grpc.RpcError) as err:
            raw(b"\xff" * (1 << 20), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid protobuf" in err.value.details()


def test_stream_scores_as_completions_arrive(reward_server: Proc) -> None:
    requests = [
        reward_pb2.ScoreStreamRequest(
            request_id=f"r{i}", item=reward_pb2.ScoreItem(completion=f"<answer>3, 1, 5, {i}</answer>", label_json=LABEL)
        )
        for i in range(1, 9)
    ]
    requests.insert(3, reward_pb2.ScoreStreamRequest(request_id="bad", item=reward_pb2.ScoreItem(completion="x")))
    with RewardClient(addr(reward_server)) as client:
        responses = list(client.score_stream(iter(requests)))
    assert [r.request_id for r in responses] == [r.request_id for r in requests]
    by_id = {r.request_id: r for r in responses}
    assert by_id["r2"].result.reward == 1.0
    assert by_id["r3"].result.failure_reason == "duplicate_index"
    assert "neither label" in by_id["bad"].error


def test_health_and_reflection_without_our_protos(reward_server: Proc) -> None:
    channel = grpc.insecure_channel(addr(reward_server))
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "mvp.v1.RewardService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    # Watch streams with context.write, not as an async generator: the interceptors pass it through
    watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=5)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"mvp.v1.RewardService", "grpc.health.v1.Health"} <= services


def _post(
    port: int, payload: object, path: str = "/score", token: str | None = None, base: str = "http://127.0.0.1", ssl=None
) -> tuple[int, dict]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{base}:{port}{path}", data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=ssl) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _query(prompt: str, response: str) -> str:
    """What OpenRLHF sends: decode(prompt tokens + response tokens), special tokens kept; the
    VLM processor expands each image into many pad tokens, so the query is not prompt + response."""
    expanded = prompt.replace("<|image_pad|>", "<|image_pad|>" * 16)
    return expanded + response + "<|im_end|>"


PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|> Answer as <answer>i1, i2, i3, i4</answer>.<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def test_openrlhf_http_protocol(reward_server: Proc) -> None:
    port = reward_server.ports["http"]
    payload = {
        "query": [_query(PROMPT, "<think>ok</think><answer>3, 1, 5, 2</answer>"), _query(PROMPT, "no idea")],
        "prompts": [PROMPT, PROMPT],
        "labels": [LABEL, LABEL],
    }
    status, body = _post(port, payload)
    assert status == 200
    assert body["rewards"] == [1.0, 0.0]
    assert body["scores"] == [1.0, 0.0]
    assert body["extra_logs"]["mvp_exact"] == [1.0, 0.0]
    assert body["extra_logs"]["mvp_parse_failed"] == [0.0, 1.0]
    # the prompt's own format example must never be scored as the answer
    assert body["rewards"][1] == 0.0


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"{not json", "not JSON"),
        ([1, 2], "JSON object"),
        ({"query": ["a"], "labels": []}, "equal length"),
        ({"query": ["a"], "labels": ['{"answer": [1]}']}, "invalid label"),
        # hostile labels (issue #15): a 5000-digit integer, a K = 24,000 pool, deep nesting, NaN times
        ({"query": ["a"], "labels": ['{"answer": [' + "9" * 5000 + '], "num_candidates": 3}']}, "invalid label"),
        (
            {"query": ["a"], "labels": [json.dumps({"answer": list(range(1, 24001)), "num_candidates": 24000})]},
            "exceeds 1024",
        ),
        ({"query": ["a"], "labels": ["[" * 100_000 + "]" * 100_000]}, "invalid label"),
        ({"query": ["a"], "labels": ['{"answer": [1], "num_candidates": 2, "gap_start_s": NaN}']}, "invalid label"),
        ({"query": ["a"] * 5000, "labels": ["{}"] * 5000}, "max_batch"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'{"query": ["\xff\xfe"]}', "not JSON"),
    ],
)
def test_openrlhf_http_errors(reward_server: Proc, payload: object, needle: str) -> None:
    status, body = _post(reward_server.ports["http"], payload)
    assert status == (413 if needle == "max_batch" else 400)
    assert needle in body["error"]


def _load_reward_func():
    path = REPO / "reward-service/src/mvp/reward/reward_func.py"
    spec = importlib.util.spec_from_file_location("reward_func", path)  # exactly as OpenRLHF loads it
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_openrlhf_reward_func_file(reward_server: Proc, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("MVP_REWARD_ADDR", addr(reward_server))
    module = _load_reward_func()
    queries = [_query(PROMPT, "<answer>3, 1, 2, 5</answer>")]
    out = module.reward_func(queries, [PROMPT], [LABEL])
    assert isinstance(out["rewards"], torch.Tensor)
    assert out["rewards"].shape == (1,)
    assert out["rewards"][0].item() == pytest.approx(0.1 + 0.3 + 0.3 * 5 / 6)
    assert set(out["extra_logs"]) >= {"mvp_selection", "mvp_ordering", "mvp_exact"}
    # OpenRLHF calls it from worker threads: the shared client must be safe under concurrency
    results: list[float] = []

    def one_call() -> None:
        results.append(module.reward_func(queries, [PROMPT], [LABEL])["rewards"][0].item())

    threads = [threading.Thread(target=one_call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    assert len(set(results)) == 1


def test_reward_func_reports_service_down(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.setenv("MVP_REWARD_ADDR", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("MVP_REWARD_TIMEOUT_S", "1")
    module = _load_reward_func()
    with pytest.raises(ServiceUnavailableError, match="unreachable"):
        module.reward_func(["<answer>1</answer>"], [""], [LABEL])


def test_metrics_endpoint(reward_server: Proc) -> None:
    with RewardClient(addr(reward_server)) as client:
        client.score(["<answer>3, 1, 5, 2</answer>", "nope"], [LABEL, LABEL])
    url = f"http://127.0.0.1:{reward_server.ports['metrics']}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    assert 'mvp_reward_completions_total{transport="grpc"}' in text
    assert 'mvp_reward_parse_failures_total{reason="no_answer_tag"}' in text
    assert "mvp_reward_value_bucket" in text
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="Score",grpc_service="mvp.v1.RewardService"}' in text


def test_reward_metrics_pass_promtool(reward_server: Proc) -> None:
    import shutil

    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (make test installs it)")
    url = f"http://127.0.0.1:{reward_server.ports['metrics']}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_bearer_token(session_tmp: Path) -> None:
    proc = start_reward(session_tmp, env={"MVP_REWARD_AUTH_TOKEN": "s3cret"})
    try:
        with RewardClient(addr(proc)) as anonymous, pytest.raises(grpc.RpcError) as err:
            anonymous.score(["x"], [LABEL])
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        bad = RewardClient(ClientConfig(target=addr(proc), auth_token="wrong"))
        with pytest.raises(grpc.RpcError) as err:
            bad.score(["x"], [LABEL])
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with RewardClient(ClientConfig(target=addr(proc), auth_token="s3cret")) as good:
            assert good.score(["<answer>3, 1, 5, 2</answer>"], [LABEL])[0].reward == 1.0
            good.wait_healthy()  # health stays open for Kubernetes probes
        # the same token guards the OpenRLHF HTTP port
        body = {"query": ["<answer>3, 1, 5, 2</answer>"], "labels": [LABEL]}
        http = proc.ports["http"]
        assert _post(http, body)[0] == 401
        assert _post(http, body, token="wrong")[0] == 401
        status, reply = _post(http, body, token="s3cret")
        assert status == 200 and reply["rewards"] == [1.0]
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/health", timeout=5) as response:
            assert response.status == 200  # health stays open here too
    finally:
        proc.stop()


def _make_cert(tmp: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "tls.crt", tmp / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_tls(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    cert, key = _make_cert(tmp_path)
    proc = start_reward(tmp_path, "--tls-cert-file", str(cert), "--tls-key-file", str(key))
    try:
        config = ClientConfig(target=f"localhost:{proc.ports['grpc']}", tls_ca_file=cert)
        with RewardClient(config) as client:
            assert client.score(["<answer>3, 1, 5, 2</answer>"], [LABEL])[0].reward == 1.0
        plain = RewardClient(ClientConfig(target=addr(proc), timeout_s=2, wait_for_ready=False, max_attempts=1))
        with pytest.raises(ServiceUnavailableError):
            plain.score(["x"], [LABEL])
        # the HTTP port serves TLS with the same certificate, and nothing in plaintext
        import ssl

        context = ssl.create_default_context(cafile=str(cert))
        body = {"query": ["<answer>3, 1, 5, 2</answer>"], "labels": [LABEL]}
        status, reply = _post(proc.ports["http"], body, base="https://localhost", ssl=context)
        assert status == 200 and reply["rewards"] == [1.0]
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            _post(proc.ports["http"], body)
    finally:
        proc.stop()


def test_sigterm_drains_in_flight_calls(tmp_path: Path) -> None:
    """A big batch in flight when SIGTERM arrives still completes; a call that arrives during the
    drain is refused as UNAVAILABLE (a client retries on another replica), health says NOT_SERVING;
    then the process exits 0."""
    # a grace far above the batch's time (~10 s alone; it ran past the default 15 s on a loaded
    # machine and was cancelled): the drain's order is under test, not the machine's speed
    proc = start_reward(tmp_path, "--max-batch", "400000", "--max-message-mb", "256", "--shutdown-grace-s", "600")
    client = RewardClient(ClientConfig(target=addr(proc), max_message_mb=256), chunk_size=400_000)
    completions = ["<think>" + "x" * 200 + "</think><answer>3, 1, 5, 2</answer>"] * 300_000
    outcome: dict[str, object] = {}

    def call() -> None:
        try:
            outcome["n"] = len(client.score(completions, [LABEL] * len(completions)))
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    metrics_url = f"http://127.0.0.1:{proc.ports['metrics']}/metrics"
    started = 'grpc_server_started_total{grpc_method="Score",grpc_service="mvp.v1.RewardService"} 1.0'
    wait_for(lambda: started in urllib.request.urlopen(metrics_url, timeout=5).read().decode(), 60, "call started")
    proc.popen.send_signal(signal.SIGTERM)
    with grpc.insecure_channel(addr(proc)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        wait_for(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == not_serving, 30, "drain")
        request = reward_pb2.ScoreRequest(items=[reward_pb2.ScoreItem(completion=RIGHT, label_json=LABEL)])
        with pytest.raises(grpc.RpcError) as refused:
            reward_pb2_grpc.RewardServiceStub(channel).Score(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in refused.value.details()
    assert outcome == {}, "the call in flight ended before the drain let it"
    assert proc.stop(timeout=600) == 0
    thread.join(60)
    assert outcome.get("n") == 300_000, outcome
    assert "grpc server stopped" in proc.log()


def test_cli_score_jsonl(reward_server: Proc) -> None:
    lines = [
        json.dumps({"completion": "<answer>3, 1, 5, 2</answer>", "label": LABEL}),
        json.dumps({"completion": "nothing", "label": LABEL}),
        "{broken json",
        json.dumps({"completion": "<answer>1</answer>", "label": '{"answer": [1]}'}),
    ]
    stdin = "\n".join(lines) + "\n"
    for extra in ([], ["--addr", addr(reward_server)]):
        out = subprocess.run(
            [*MVP, "reward", "score", *extra], input=stdin, capture_output=True, text=True, check=True, timeout=60
        ).stdout.splitlines()
        rows = [json.loads(line) for line in out]
        assert len(rows) == 4
        assert rows[0]["reward"] == 1.0
        assert rows[0]["components"]["exact"] == 1.0
        assert rows[1]["reward"] == 0.0
        assert rows[1]["reason"] == "no_answer_tag"
        assert "error" in rows[2]
        assert "error" in rows[3]


def test_cli_score_service_down_exits_nonzero() -> None:
    proc = subprocess.run(
        [*MVP, "reward", "score", "--addr", f"127.0.0.1:{free_port()}", "--timeout-s", "2"],
        input=json.dumps({"completion": "x", "label": LABEL}) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "unreachable" in proc.stderr or "Unavailable" in proc.stderr


def test_reward_service_does_not_import_torch() -> None:
    # through the real entry point too: `mvp reward serve` builds every command's parser first
    code = "import sys, mvp.reward.service, mvp.cli; mvp.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
