"""The OpenAI-compatible HTTP API: /v1/chat/completions (plain and SSE streaming), /v1/models,
/v1/mvp/predict, /health, /metrics. Errors are OpenAI error objects; a bad request never takes the
server down. Generation is done in-process (transformers backend) or by a vLLM server behind this
one (vLLM backend, ``mvp.inference.vllm_backend``); media, limits and errors are handled here for both."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from mvp.common.procs import release_memory_every
from mvp.common.storage import Storage
from mvp.inference import metrics
from mvp.inference.engine import Admission, GenRequest, TransformersEngine
from mvp.inference.media import MediaBudget, MediaError, MediaFetcher
from mvp.inference.settings import ServeSettings
from mvp.inference.vllm_backend import VllmUpstream, openai_messages
from mvp.model.policy import Policy

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)

    async def __call__(self, scope, receive, send) -> None:
        """As an ASGI app (middleware answers before any route)."""
        await self.response()(scope, receive, send)


def _vllm_unreachable(exc: httpx.HTTPError) -> ApiError:
    """What every endpoint answers when the vLLM server behind it cannot be reached."""
    return ApiError(503, f"vLLM server unreachable: {type(exc).__name__}", kind="service_unavailable")


class ChatRequest(BaseModel):
    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)


class PredictRequest(BaseModel):
    sample: dict[str, Any] = Field(description="An mvp.v1.Sample as JSON, as synth-service writes it.")
    max_tokens: int = Field(32, ge=1)


class App:
    """State of one server process: the policy and its engine (transformers backend) or the vLLM
    server it forwards to (vLLM backend), media fetching and settings."""

    def __init__(
        self,
        settings: ServeSettings,
        policy: Policy | None,
        storage: Storage,
        upstream: VllmUpstream | None = None,
        model_root: str = "",
    ) -> None:
        if (policy is None) == (upstream is None):
            raise ValueError("exactly one of policy (transformers backend) and upstream (vLLM backend)")
        self.settings = settings
        self.policy = policy
        self.upstream = upstream
        self.name = settings.served_model_name
        self.admission = Admission(settings.max_queue, self.name)
        self.engine = (
            TransformersEngine(policy, self.name, settings.max_batch_size, settings.batch_wait_ms, self.admission)
            if policy
            else None
        )
        self.media = MediaFetcher(settings, storage)
        self.created = int(time.time())
        self.model_root = model_root or (str(policy.path) if policy else "")

    def stop(self) -> None:
        if self.engine:
            self.engine.stop()

    async def build_prompt(self, messages: list[dict[str, Any]]) -> tuple[list[dict], list]:
        """OpenAI messages -> chat-template messages with image parts, plus the images in order.
        The text's length is checked before any media is fetched, and all the media share one
        ``MediaBudget``."""
        self.limit_prompt_chars(_text_length(messages))
        budget = MediaBudget(self.settings)
        out, images = [], []
        for i, message in enumerate(messages):
            role, content = message.get("role"), message.get("content")
            if role not in ("system", "user", "assistant"):
                raise ApiError(400, f"messages[{i}].role must be system, user or assistant", param="messages")
            if isinstance(content, str):
                out.append({"role": role, "content": content})
                continue
            if not isinstance(content, list):
                raise ApiError(400, f"messages[{i}].content must be a string or a list of parts", param="messages")
            parts = []
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                where = f"messages[{i}].content[{j}]"
                try:
                    if kind == "text" and isinstance(part.get("text"), str):
                        parts.append({"type": "text", "text": part["text"]})
                    elif kind == "image_url":
                        images.append(await self.media.image(_url_of(part, "image_url", where), budget))
                        parts.append({"type": "image"})
                    elif kind == "video_url":
                        for frame in await self.media.video_frames(_url_of(part, "video_url", where), budget):
                            images.append(frame)
                            parts.append({"type": "image"})
                    else:
                        raise ApiError(400, f"{where}: unsupported or malformed content part", param="messages")
                except MediaError as exc:
                    raise ApiError(400, f"{where}: {exc}", param="messages") from None
                self.limit_images(len(images))
            out.append({"role": role, "content": parts})
        return out, images

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

    def limit_prompt_tokens(self, tokens: int, param: str = "messages") -> None:
        """The one prompt-token check of every route (transformers backend; vLLM checks its own)."""
        if tokens > self.settings.max_prompt_tokens:
            raise ApiError(
                400,
                f"the prompt has {tokens} tokens; the limit is {self.settings.max_prompt_tokens}",
                param=param,
                code="context_length_exceeded",
            )

    def busy(self) -> bool:
        """True when ``max_queue`` admitted requests already wait (being prepared, queued or
        pending; on the vLLM backend, being prepared: vLLM keeps its own queue)."""
        return self.admission.full()

    def queue_full(self) -> ApiError:
        return ApiError(
            429,
            f"the server is busy: {self.settings.max_queue} requests are waiting; retry shortly",
            kind="rate_limit_error",
            code="queue_full",
            headers={"Retry-After": "1"},
        )

    @contextlib.contextmanager
    def admitted(self) -> Iterator[Callable[[GenRequest], None]]:
        """Counts the request against ``max_queue`` from here on (429 when full), so fetching and
        decoding its media and tokenizing its prompt are bounded like generation. Yields the
        function that queues its generation: the engine then keeps it counted until its batch
        starts. A request that fails, is cancelled or is forwarded to vLLM leaves the count when
        the block ends."""
        if not self.admission.enter():
            raise self.queue_full()
        queued = False

        def submit(request: GenRequest) -> None:
            nonlocal queued
            self.engine.submit(request)
            queued = True

        try:
            yield submit
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

    async def generate(self, body: ChatRequest) -> GenRequest:
        max_tokens = self.check(body)
        with self.admitted() as submit:
            messages, images = await self.build_prompt(body.messages)
            enc = await asyncio.to_thread(self.policy.encode_messages, messages, images)
            self.limit_prompt_tokens(len(enc.input_ids))
            request = GenRequest(
                enc=enc,
                n=body.n,
                max_tokens=max_tokens,
                temperature=body.temperature,
                top_p=body.top_p,
                seed=body.seed,
                loop=asyncio.get_running_loop(),
            )
            submit(request)
        return request


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


def _url_of(part: dict, key: str, where: str) -> str:
    value = part.get(key)
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise ApiError(400, f"{where}: {key}.url is required", param="messages")
    return url


def _cut(text: str, stops: list[str]) -> tuple[str, bool]:
    cuts = [text.find(s) for s in stops if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 whether it declares a
    Content-Length or arrives chunked (the bytes are counted as they come, never buffered past the
    limit)."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send) -> None:
        mib = self.limit // (1024 * 1024)
        await ApiError(413, f"request body over {mib} MiB")(scope, receive, send)


class ShedWhenBusy:
    """ASGI middleware: while the generation queue is full, a generation request is answered 429
    before its body is read, parsed or tokenized (under a burst most requests are turned away, and
    doing that work for each of them delayed every other request, health checks included)."""

    def __init__(self, app, state: App) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] in GENERATION_PATHS and self.state.busy():
            await self.state.queue_full()(scope, receive, send)
            return
        await self.app(scope, receive, send)


class RequireApiKey:
    """ASGI middleware: every /v1 route needs ``Authorization: Bearer <api key>`` (the OpenAI
    client's ``api_key``); /health and /metrics stay open for probes and Prometheus."""

    def __init__(self, app, api_key: bytes) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1"):
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            scheme, _, key = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(key, self.api_key):
                kind = "invalid_api_key" if given else "missing_api_key"
                error = ApiError(401, "a valid API key is required (Authorization: Bearer <key>)", code=kind)
                await error(scope, receive, send)
                return
        await self.app(scope, receive, send)


GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/mvp/predict"})


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
    app.add_middleware(ShedWhenBusy, state=state)
    if state.settings.api_key:
        app.add_middleware(RequireApiKey, api_key=state.settings.api_key.get_secret_value().encode())

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # e.g. a body FastAPI cannot read (non-UTF-8): an OpenAI error object, never {"detail": ...}
        return ApiError(exc.status_code, str(exc.detail), kind="invalid_request_error").response()

    @app.get("/health", response_model=None)
    async def health() -> dict | JSONResponse:
        if state.upstream and not await state.upstream.healthy():
            return JSONResponse({"status": "unavailable", "model": state.name, "backend": "vllm"}, status_code=503)
        return {"status": "ok", "model": state.name, "backend": "vllm" if state.upstream else "transformers"}

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        if state.upstream:  # vLLM's own metrics, unchanged (same names as the transformers backend's)
            try:
                upstream = await state.upstream.metrics()
            except httpx.HTTPError as exc:
                raise _vllm_unreachable(exc) from None
            return PlainTextResponse(upstream.text, media_type=upstream.headers.get("content-type"))
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

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
                    "root": state.model_root,
                }
            ],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatRequest, http: Request) -> JSONResponse | StreamingResponse:
        if state.upstream:
            return await _forward(state, body)
        tok = state.policy.tokenizer
        started = time.perf_counter()
        request = await state.generate(body)
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            return StreamingResponse(_stream(state, request, body, stops, cid, started), media_type="text/event-stream")
        results = await _final(request, http)
        choices, completion_tokens = [], 0
        for index, (tokens, finished) in enumerate(results):
            text, stopped = _cut(tok.decode(tokens, skip_special_tokens=False), stops)
            finished = "stop" if stopped else finished
            completion_tokens += len(tokens)
            metrics.SUCCESS.labels(state.name, finished).inc()
            choices.append(
                {
                    "index": index,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finished,
                    "logprobs": None,
                }
            )
        metrics.E2E.labels(state.name).observe(time.perf_counter() - started)
        prompt_tokens = len(request.enc.input_ids)
        return JSONResponse(
            {
                "id": cid,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": state.name,
                "choices": choices,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    @app.post("/v1/mvp/predict")
    async def predict(body: PredictRequest, http: Request) -> dict:
        return await _predict(state, body, http)

    return app


async def _forward(state: App, body: ChatRequest) -> JSONResponse | StreamingResponse:
    """vLLM backend: checks and media resolution here, generation there; vLLM's answer (or its
    OpenAI error object) goes back unchanged."""
    state.check(body)
    with state.admitted():
        messages, images = await state.build_prompt(body.messages)
        payload = body.model_dump(exclude_none=True)
        payload["messages"] = await asyncio.to_thread(openai_messages, messages, images, state.upstream.sized)
        del images  # decoded images are not kept while vLLM generates (the data URLs carry them)
    try:
        if body.stream:
            return StreamingResponse(state.upstream.stream(payload), media_type="text/event-stream")
        response = await state.upstream.chat(payload)
    except httpx.HTTPError as exc:
        raise _vllm_unreachable(exc) from None
    return JSONResponse(response.json(), status_code=response.status_code)


async def _final(request: GenRequest, client: Request | None = None) -> list[tuple[list[int], str]]:
    """The finished completions; if the client disconnects first, the request is cancelled (dropped
    from the queue, or its batch stopped) instead of generated for nobody."""
    while True:
        try:
            event = await asyncio.wait_for(request.events.get(), 0.25)
        except TimeoutError:
            if client is not None and await client.is_disconnected():
                request.cancelled.set()
                raise ApiError(499, "client closed the request", kind="client_closed") from None
            continue
        if event[0] == "done":
            return event[1]
        if event[0] == "error":
            raise ApiError(500, event[1], kind="internal_error")


async def _stream(
    state: App, request: GenRequest, body: ChatRequest, stops: list[str], cid: str, started: float
) -> AsyncIterator[str]:
    created = int(time.time())
    tokens: list[list[int]] = [[] for _ in range(body.n)]
    sent = ["" for _ in range(body.n)]
    stopped = [False] * body.n

    def chunk(index: int, delta: dict, finish: str | None = None) -> str:
        payload = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": state.name,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        return f"data: {json.dumps(payload)}\n\n"

    tok = state.policy.tokenizer
    try:  # finally: the client went away (the response task is cancelled) or the stream ended
        for index in range(body.n):
            yield chunk(index, {"role": "assistant", "content": ""})
        while True:
            event = await request.events.get()
            if event[0] == "token":
                _, index, token = event
                if stopped[index]:
                    continue
                tokens[index].append(token)
                text, cut = _cut(tok.decode(tokens[index], skip_special_tokens=False), stops)
                if text.endswith("\ufffd") and not cut:
                    continue  # an incomplete UTF-8 sequence: wait for the rest
                if len(text) > len(sent[index]):
                    yield chunk(index, {"content": text[len(sent[index]) :]})
                    sent[index] = text
                stopped[index] = cut
            elif event[0] == "done":
                for index, (_, finished) in enumerate(event[1]):
                    reason = "stop" if stopped[index] else finished
                    metrics.SUCCESS.labels(state.name, reason).inc()
                    yield chunk(index, {}, reason)
                metrics.E2E.labels(state.name).observe(time.perf_counter() - started)
                yield "data: [DONE]\n\n"
                return
            else:
                yield f"data: {json.dumps({'error': {'message': event[1], 'type': 'internal_error'}})}\n\n"
                return
    finally:
        request.cancelled.set()


async def _predict(state: App, body: PredictRequest, http: Request | None = None) -> dict:
    """Answers an MVP sample (prompt with <image> slots + its frames) greedily, parses the answer
    with the reward library, and scores it through the reward-service when one is configured."""
    from mvp.common.sample import IMAGE_PLACEHOLDER, Label, frame_uris, label_json, parse_answer, prompt_messages

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
    state.limit_tokens(body.max_tokens)
    state.limit_prompt_chars(len(prompt), param="sample")
    with state.admitted() as submit:
        budget = MediaBudget(state.settings)
        try:
            images = [await state.media.image(uri, budget) for uri in frames]
        except MediaError as exc:
            raise ApiError(400, f"sample frame: {exc}", param="sample") from None
        if state.upstream:
            payload = {
                "model": state.name,
                "messages": await asyncio.to_thread(
                    openai_messages, prompt_messages(prompt), images, state.upstream.sized
                ),
                "max_tokens": body.max_tokens,
                "temperature": 0.0,
            }
        else:
            enc = await asyncio.to_thread(state.policy.encode_messages, prompt_messages(prompt), images)
            state.limit_prompt_tokens(len(enc.input_ids), param="sample")
            request = GenRequest(
                enc=enc,
                n=1,
                max_tokens=body.max_tokens,
                temperature=0.0,
                top_p=1.0,
                seed=0,
                loop=asyncio.get_running_loop(),
            )
            submit(request)
        del images  # decoded frames are not kept while the model generates
    if state.upstream:
        try:
            response = await state.upstream.chat(payload)
        except httpx.HTTPError as exc:
            raise _vllm_unreachable(exc) from None
        if response.status_code != 200:
            raise ApiError(response.status_code, f"vLLM: {response.text[:500]}", kind="upstream_error")
        completion = response.json()["choices"][0]["message"]["content"]
    else:
        ((tokens, _),) = await _final(request, http)
        completion = state.policy.tokenizer.decode(tokens, skip_special_tokens=False)
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
