"""The OpenAI-compatible HTTP API: /v1/chat/completions (plain and SSE streaming), /v1/models,
/v1/mvp/predict, /health, /metrics. Errors are OpenAI error objects; a bad request never takes the
server down. Media, limits, admission and errors are handled here; generation is a ``Backend``'s
(``api.Backend``): in this process (``transformers_backend``) or by a vLLM server behind this one
(``vllm_backend``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mvp.common.procs import release_memory_every
from mvp.common.storage import Storage
from mvp.inference.api import ApiError, Backend, ChatRequest, PredictRequest, Sampling
from mvp.inference.media import MediaBudget, MediaError, MediaFetcher
from mvp.inference.middleware import BodyLimit, RequireApiKey, ShedWhenBusy, queue_full
from mvp.inference.settings import ServeSettings

log = logging.getLogger(__name__)


class App:
    """State of one server process: its generation backend, media fetching and settings."""

    def __init__(self, settings: ServeSettings, backend: Backend, storage: Storage) -> None:
        self.settings = settings
        self.backend = backend
        self.name = settings.served_model_name
        self.admission = backend.admission
        self.media = MediaFetcher(settings, storage)
        self.created = int(time.time())

    def stop(self) -> None:
        self.backend.stop()

    async def build_prompt(self, messages: list[dict[str, Any]]) -> tuple[list[dict], list]:
        """OpenAI messages -> chat-template messages with image parts, plus the images in order.
        The text's length is checked before any media is fetched; all the media share one
        ``MediaBudget``, charged from every header before the first pixel is decoded."""
        self.limit_prompt_chars(_text_length(messages))
        budget = MediaBudget(self.settings)
        planned = await self._plan(messages, budget)
        out, images = [], []
        for role, content in planned:
            if isinstance(content, str):
                out.append({"role": role, "content": content})
                continue
            parts = []
            for part in content:
                if isinstance(part, dict):
                    parts.append(part)
                    continue
                where, decode = part
                with _bad_media(where):
                    frames = await asyncio.to_thread(decode)
                images.extend(frames)
                parts.extend({"type": "image"} for _ in frames)
                self.limit_images(len(images))
            out.append({"role": role, "content": parts})
        return out, images

    async def _plan(self, messages: list[dict[str, Any]], budget: MediaBudget) -> list[tuple[str, Any]]:
        """Checks the messages' shape and fetches and header-checks their media: each message as
        ``(role, text)`` or ``(role, [text part | (where, decode)])``."""
        planned: list[tuple[str, Any]] = []
        media = 0
        for i, message in enumerate(messages):
            role, content = message.get("role"), message.get("content")
            if role not in ("system", "user", "assistant"):
                raise ApiError(400, f"messages[{i}].role must be system, user or assistant", param="messages")
            if isinstance(content, str):
                planned.append((role, content))
                continue
            if not isinstance(content, list):
                raise ApiError(400, f"messages[{i}].content must be a string or a list of parts", param="messages")
            parts: list[Any] = []
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                where = f"messages[{i}].content[{j}]"
                if kind == "text" and isinstance(part.get("text"), str):
                    parts.append({"type": "text", "text": part["text"]})
                    continue
                if kind not in ("image_url", "video_url"):
                    raise ApiError(400, f"{where}: unsupported or malformed content part", param="messages")
                media += 1
                self.limit_images(media)  # a video gives at least one frame
                with _bad_media(where):
                    parts.append((where, await self.media.plan(_url_of(part, kind, where), kind, budget)))
            planned.append((role, parts))
        return planned

    def limit_tokens(self, max_tokens: int) -> int:
        """The one max_tokens check of every route."""
        if max_tokens > self.settings.max_tokens_limit:
            raise ApiError(
                400, f"max_tokens {max_tokens} exceeds the limit {self.settings.max_tokens_limit}", param="max_tokens"
            )
        return max_tokens

    def limit_images(self, count: int, param: str = "messages") -> None:
        """The one image-count check of every route."""
        if count > self.settings.max_images:
            raise ApiError(400, f"more than max_images={self.settings.max_images} images", param=param)

    def limit_prompt_chars(self, chars: int, param: str = "messages") -> None:
        """The one prompt-length check before tokenizing, of every route: a text that long cannot be
        within max_prompt_tokens, and tokenizing it would cost more than the request is worth."""
        if chars > self.settings.max_prompt_chars:
            raise ApiError(
                400,
                f"the prompt has {chars} characters; the limit is max_prompt_chars={self.settings.max_prompt_chars} "
                f"(max_prompt_tokens={self.settings.max_prompt_tokens})",
                param=param,
                code="context_length_exceeded",
            )

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """Counts the request against ``max_queue`` from here on (429 when full), so fetching and
        decoding its media and tokenizing its prompt are bounded like generation. A backend that
        queues the request itself (transformers) keeps it counted until its batch starts; otherwise
        (or when the request fails or is cancelled first) it leaves the count when the block ends."""
        if not self.admission.enter():
            raise queue_full(self.settings.max_queue)
        queued = False
        try:
            yield
            queued = self.backend.holds_admission
        finally:
            if not queued:
                self.admission.leave()

    def check(self, body: ChatRequest) -> int:
        """The request limits of both backends; returns max_tokens."""
        if body.model != self.name:
            raise ApiError(
                404,
                f"The model `{body.model}` does not exist.",
                kind="NotFoundError",
                param="model",
                code="model_not_found",
            )
        max_tokens = self.limit_tokens(body.max_completion_tokens or body.max_tokens or 64)
        if body.n > self.settings.max_batch_size:
            raise ApiError(400, f"n={body.n} exceeds max_batch_size={self.settings.max_batch_size}", param="n")
        return max_tokens

    async def prepare(self, messages: list[dict[str, Any]], sampling: Sampling, param: str = "messages") -> object:
        """Admits a request, builds its prompt (media fetched under one budget) and hands it to the
        backend: what the backend returns is what ``respond``/``complete`` take."""
        with self.admitted():
            prompt, images = await self.build_prompt(messages)
            return await self.backend.prepare(prompt, images, sampling, param)


def _text_length(messages: list[dict[str, Any]]) -> int:
    """Characters of the messages' text: string contents and text parts."""
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return total


@contextlib.contextmanager
def _bad_media(where: str) -> Iterator[None]:
    """A medium that cannot be fetched, is over a budget or does not decode: 400 naming its part."""
    try:
        yield
    except MediaError as exc:
        raise ApiError(400, f"{where}: {exc}", param="messages") from None


def _url_of(part: dict, key: str, where: str) -> str:
    value = part.get(key)
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise ApiError(400, f"{where}: {key}.url is required", param="messages")
    return url


def create_app(state: App) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        trim = asyncio.create_task(release_memory_every(state.settings.memory_trim_interval_s))
        try:
            yield
        finally:
            trim.cancel()

    app = FastAPI(title="MVP-Train inference", docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # a bug, never the client's fault: an OpenAI error object like every other error (Starlette's
        # default is a plain-text 500); Starlette re-raises it afterwards, so uvicorn logs the traceback
        return ApiError(500, "internal error (logged by the server)", kind="internal_error").response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(x) for x in first.get("loc", [])[1:]) or None
        return ApiError(400, f"invalid request: {first.get('msg', 'malformed body')}", param=param).response()

    # Pure ASGI middlewares, the last added outermost: the API key is checked first, then a full
    # queue turns generation requests away, then the body's size is limited; none reads a body it
    # does not need.
    app.add_middleware(BodyLimit, limit=state.settings.max_request_mb * 1024 * 1024)
    app.add_middleware(ShedWhenBusy, admission=state.admission)
    if state.settings.api_key:
        app.add_middleware(RequireApiKey, api_key=state.settings.api_key.get_secret_value().encode())

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # e.g. a body FastAPI cannot read (non-UTF-8): an OpenAI error object, never {"detail": ...}
        return ApiError(exc.status_code, str(exc.detail), kind="invalid_request_error").response()

    @app.get("/health", response_model=None)
    async def health() -> dict | JSONResponse:
        kind = state.backend.kind
        if not await state.backend.healthy():
            return JSONResponse({"status": "unavailable", "model": state.name, "backend": kind}, status_code=503)
        return {"status": "ok", "model": state.name, "backend": kind}

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return await state.backend.metrics()

    @app.get("/v1/models")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [
                {
                    "id": state.name,
                    "object": "model",
                    "created": state.created,
                    "owned_by": "mvp-train",
                    "root": state.backend.model_root,
                }
            ],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatRequest, http: Request) -> JSONResponse | StreamingResponse:
        sampling = Sampling.of(body, state.check(body))
        pending = await state.prepare(body.messages, sampling)
        return await state.backend.respond(pending, sampling, body.stream, http)

    @app.post("/v1/mvp/predict")
    async def predict(body: PredictRequest, http: Request) -> dict:
        return await _predict(state, body, http)

    return app


async def _predict(state: App, body: PredictRequest, http: Request | None = None) -> dict:
    """Answers an MVP sample (prompt with <image> slots + its frames) greedily, parses the answer
    with the sample format's parser, and scores it through the reward-service when one is
    configured. The frames are fetched like any image URL: under the allow-lists and one budget."""
    from mvp.common.sample import IMAGE_PLACEHOLDER, Label, frame_uris, label_json, openai_messages, parse_answer

    sample = body.sample
    try:
        frames = frame_uris(sample)
        prompt = sample["prompt"]
        label = Label.from_json(label_json(sample))
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiError(400, f"sample is not an mvp.v1.Sample: {exc}", param="sample") from None
    if not isinstance(prompt, str):
        raise ApiError(400, "the sample's prompt must be a string", param="sample")
    if prompt.count(IMAGE_PLACEHOLDER) != len(frames):
        raise ApiError(400, "the sample's prompt and frames disagree in number", param="sample")
    state.limit_images(len(frames), param="sample")
    state.limit_prompt_chars(len(prompt), param="sample")
    # greedy, one choice; seeded, so it runs in a batch of its own and its answer never depends on load
    sampling = Sampling(max_tokens=state.limit_tokens(body.max_tokens), seed=0)
    try:
        pending = await state.prepare(openai_messages(prompt, frames), sampling, param="sample")
    except ApiError as error:
        if error.param == "messages":  # a frame the media rules refuse: the sample is at fault
            error.param, error.message = "sample", "sample frame: " + error.message.split(": ", 1)[-1]
        raise
    completion = await state.backend.complete(pending, http)
    parsed = parse_answer(completion, len(label.answer), label.num_candidates, label.index_base)
    result: dict[str, Any] = {
        "sample_id": sample.get("id"),
        "completion": completion,
        "answer": parsed.indices if not parsed.failure_reason else None,
        "failure_reason": parsed.failure_reason or None,
        "ground_truth": list(label.answer),
    }
    if state.settings.reward_addr:
        from mvp.clients import RewardClient

        with RewardClient(state.settings.reward_addr) as client:  # MVP_REWARD_TOKEN / _TLS_CA from the env
            (scored,) = await asyncio.to_thread(client.score, [completion], [label_json(sample)])
        result["reward"] = scored.reward
        result["components"] = {
            f: getattr(scored.components, f) for f in ("format", "selection", "ordering", "exact", "soft")
        }
    return result
