"""`mvp serve` with the official openai client: images, video, streaming, n > 1, seeds under
concurrency, OpenAI error objects, metrics that promtool accepts, MVP predict.

Every test runs against both backends. "transformers" generates in-process. "vllm" is the vLLM
backend's front (media, limits, errors, predict, metrics pass-through) attached with --vllm-url to
an OpenAI-compatible upstream; vLLM itself cannot run on this machine (docs/inference.md), so the
upstream here is a second `mvp serve` (transformers backend), which speaks the same API and exports
the same vllm:* metrics."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from PIL import Image

from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from tests.media import good_videos, mvp_predict
from tests.procs import Proc, start_serve

pytestmark = pytest.mark.integration


def data_url(color: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module", params=["transformers", "vllm"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, s3_server: Proc) -> Proc:
    tmp = tmp_path_factory.mktemp("serve")
    env = {"MVP_S3_ENDPOINT": f"http://127.0.0.1:{s3_server.ports['s3']}"}
    limits = ["--max-images", "20", "--max-tokens-limit", "64"]
    upstream = None
    if request.param == "vllm":
        upstream = start_serve(tmp, *limits, env=env)
        proc = start_serve(
            tmp, *limits, "--backend", "vllm", "--vllm-url", f"http://127.0.0.1:{upstream.ports['http']}", env=env
        )
    else:
        proc = start_serve(tmp, *limits, env=env)
    yield proc
    proc.stop()
    if upstream:
        upstream.stop()


def client(server: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.ports['http']}/v1", api_key="unused", max_retries=0)


IMAGES = [
    {"type": "image_url", "image_url": {"url": data_url((200, 30, 30))}},
    {"type": "image_url", "image_url": {"url": data_url((30, 200, 30))}},
]


def test_models_and_chat_with_images(server: Proc) -> None:
    c = client(server)
    assert [m.id for m in c.models.list().data] == ["mvp-tiny"]
    response = c.chat.completions.create(
        model="mvp-tiny",
        max_tokens=8,
        n=3,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Which frame is first?"}, *IMAGES]}],
    )
    assert len(response.choices) == 3
    assert all(choice.finish_reason in ("stop", "length") for choice in response.choices)
    assert response.usage.prompt_tokens > 2 * 15 and 0 < response.usage.completion_tokens <= 24


def test_streaming(server: Proc) -> None:
    stream = client(server).chat.completions.create(
        model="mvp-tiny",
        max_tokens=10,
        stream=True,
        seed=3,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Describe"}, IMAGES[0]]}],
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    plain = client(server).chat.completions.create(
        model="mvp-tiny",
        max_tokens=10,
        seed=3,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Describe"}, IMAGES[0]]}],
    )
    assert text == plain.choices[0].message.content  # same seed, same tokens, streamed or not


def test_seeded_requests_are_reproducible_under_concurrency(server: Proc) -> None:
    def ask(seed: int) -> str:
        r = client(server).chat.completions.create(
            model="mvp-tiny",
            max_tokens=12,
            seed=seed,
            temperature=1.0,
            messages=[{"role": "user", "content": [{"type": "text", "text": "go"}, IMAGES[1]]}],
        )
        return r.choices[0].message.content

    sequential = [ask(s) for s in range(6)]
    with ThreadPoolExecutor(6) as pool:
        concurrent = list(pool.map(ask, range(6)))
    assert concurrent == sequential


def test_video_url_from_the_store(server: Proc, s3_settings: StoreSettings, tmp_path: Path) -> None:
    (video,) = good_videos(tmp_path, 1, seconds=6, seed=4242)
    storage = Storage(s3_settings)
    storage.ensure_bucket("mvp")
    storage.put_file(str(video), "s3://mvp/serve-test/v.mp4")
    r = client(server).chat.completions.create(
        model="mvp-tiny",
        max_tokens=4,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": "s3://mvp/serve-test/v.mp4"}},
                    {"type": "text", "text": "what happens?"},
                ],
            }
        ],
    )
    assert r.usage.prompt_tokens > 6 * 15  # six frames at 1 fps


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        ({"model": "gpt-4"}, 404, "does not exist"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "image_url.url is required"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, 400, "unsupported"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/x.png"}}],
                    }
                ]
            },
            400,
            "allowed_media_hosts",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "s3://other-bucket/x.png"}}],
                    }
                ]
            },
            400,
            "allowed_buckets",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGVsbG8="}}],
                    }
                ]
            },
            400,
            "decodable image",
        ),
        ({"messages": [{"role": "user", "content": [IMAGES[0]] * 21}]}, 400, "max_images"),
        ({"max_tokens": 1000}, 400, "exceeds the limit"),
        ({"messages": [{"role": "user", "content": "x" * 40000}]}, 400, "tokens"),
        ({"messages": []}, 400, "invalid request"),
    ],
)
def test_openai_style_errors(server: Proc, kwargs: dict, status: int, needle: str) -> None:
    body = {"model": "mvp-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **kwargs}
    with pytest.raises(openai.APIStatusError) as err:
        client(server).chat.completions.create(**body)
    assert err.value.status_code == status
    assert needle in err.value.body["message"]
    assert client(server).models.list()  # still serving


def test_metrics_pass_promtool(server: Proc, tmp_path: Path) -> None:
    client(server).chat.completions.create(model="mvp-tiny", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.ports['http']}/metrics", timeout=5).read().decode()
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:request_success_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
    ):
        assert name in text, name
    assert 'model_name="mvp-tiny"' in text
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (make test installs it)")
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    problems = [line for line in (check.stdout + check.stderr).splitlines() if line.strip()]
    # vLLM's metric names contain ':' (kept on purpose, so dashboards work across backends), which
    # promtool's naming lint flags; anything else (parse errors, bad types, units) must not appear.
    other = [p for p in problems if not p.endswith("metric names should not contain ':'")]
    assert not other, other
    assert all(p.startswith("vllm:") for p in problems)


def test_mvp_predict(server: Proc, s3_settings: StoreSettings) -> None:
    storage = Storage(s3_settings)
    storage.ensure_bucket("mvp")
    uris = []
    for i in range(4):
        buf = io.BytesIO()
        Image.new("RGB", (64, 36), (i * 50, 80, 120)).save(buf, format="JPEG")
        storage.put_bytes(f"s3://mvp/predict/f{i}.jpg", buf.getvalue())
        uris.append(f"s3://mvp/predict/f{i}.jpg")
    result = mvp_predict(server.ports["http"], uris)
    assert result["sample_id"] == "s1" and result["ground_truth"] == [2]
    assert result["answer"] is not None or result["failure_reason"]


def test_a_real_prometheus_scrapes_the_server(server: Proc, tmp_path: Path) -> None:
    """A Prometheus server (Debian's, installed with promtool) scrapes /metrics once and can
    query the vLLM-named series."""
    import time

    from tests.procs import free_port, wait_for

    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (make test installs it)")
    client(server).chat.completions.create(model="mvp-tiny", max_tokens=4, messages=[{"role": "user", "content": "x"}])
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: mvp-serve\n    static_configs: [{{targets: ['127.0.0.1:{server.ports['http']}']}}]\n"
    )
    prom = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # the port opens before the TSDB is up; until /-/ready says 200 the API answers 503
        ready = f"http://127.0.0.1:{port}/-/ready"
        wait_for(lambda: urllib.request.urlopen(ready, timeout=5).status == 200, 120, "prometheus", prom)
        query = f"http://127.0.0.1:{port}/api/v1/query?query=vllm:generation_tokens_total"

        def scraped() -> bool:
            body = json.loads(urllib.request.urlopen(query, timeout=5).read())
            return bool(body["data"]["result"])

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not scraped():
            time.sleep(0.5)
        body = json.loads(urllib.request.urlopen(query, timeout=5).read())
        (series,) = body["data"]["result"]
        assert series["metric"]["model_name"] == "mvp-tiny" and float(series["value"][1]) > 0
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).read())
        assert targets["data"]["activeTargets"][0]["health"] == "up"
    finally:
        prom.terminate()
        prom.wait(30)


def test_vllm_front_reports_a_dead_upstream(tmp_path: Path) -> None:
    """The vLLM backend's front says which backend serves, and when the vLLM server behind it dies
    it answers /health 503 and requests with an OpenAI error instead of hanging or crashing."""
    upstream = start_serve(tmp_path)
    front = start_serve(tmp_path, "--backend", "vllm", "--vllm-url", f"http://127.0.0.1:{upstream.ports['http']}")
    try:
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{front.ports['http']}/health").read())
        assert health == {"status": "ok", "model": "mvp-tiny", "backend": "vllm"}
        upstream.stop()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{front.ports['http']}/health")
        assert err.value.code == 503
        with pytest.raises(openai.APIStatusError) as api_err:
            client(front).chat.completions.create(
                model="mvp-tiny", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
            )
        assert api_err.value.status_code == 503 and "vLLM server unreachable" in api_err.value.body["message"]
        assert front.popen.poll() is None  # still up, ready for a restarted upstream
    finally:
        front.stop()
        upstream.stop()
