"""The transformers backend: generation in this process, by ``engine.TransformersEngine`` (one
thread that batches concurrent requests), answers built here in the OpenAI shapes, plain and
streamed, with vLLM's metric names."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mvp.inference import metrics
from mvp.inference.api import Admission, ApiError, Sampling, cut_at_stops
from mvp.inference.engine import GenRequest, TransformersEngine
from mvp.inference.settings import ServeSettings
from mvp.model.policy import Policy


class TransformersBackend:
    """A ``Policy`` and its batching engine. A prepared request is queued at once and leaves the
    admission count when its batch starts."""

    kind = "transformers"
    holds_admission = True

    def __init__(self, policy: Policy, settings: ServeSettings) -> None:
        self.policy = policy
        self.name = settings.served_model_name
        self.max_prompt_tokens = settings.max_prompt_tokens
        self.admission = Admission(settings.max_queue, self.name)
        self.engine = TransformersEngine(
            policy, self.name, settings.max_batch_size, settings.batch_wait_ms, self.admission
        )
        self.model_root = str(policy.path)

    async def healthy(self) -> bool:
        return self.engine.thread.is_alive()

    async def metrics(self) -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def prepare(
        self, messages: list[dict], images: list[Image.Image], sampling: Sampling, param: str
    ) -> GenRequest:
        enc = await asyncio.to_thread(self.policy.encode_messages, messages, images)
        if len(enc.input_ids) > self.max_prompt_tokens:
            raise ApiError(
                400,
                f"the prompt has {len(enc.input_ids)} tokens; the limit is {self.max_prompt_tokens}",
                param=param,
                code="context_length_exceeded",
            )
        request = GenRequest(
            enc=enc,
            n=sampling.n,
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            loop=asyncio.get_running_loop(),
            arrival=sampling.arrival,
        )
        self.engine.submit(request)
        return request

    async def respond(
        self, pending: GenRequest, sampling: Sampling, stream: bool, http: Request
    ) -> JSONResponse | StreamingResponse:
        started = pending.arrival
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        if stream:
            return StreamingResponse(self._stream(pending, sampling, cid, started), media_type="text/event-stream")
        results = await _final(pending, http)
        choices, completion_tokens = [], 0
        for index, (tokens, finished) in enumerate(results):
            text, stopped = cut_at_stops(self.policy.tokenizer.decode(tokens, skip_special_tokens=False), sampling.stop)
            completion_tokens += len(tokens) + (finished == "stop")  # the end-of-sequence token counts, as in vLLM
            finished = "stop" if stopped else finished
            metrics.SUCCESS.labels(self.name, finished).inc()
            choices.append(
                {
                    "index": index,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finished,
                    "logprobs": None,
                }
            )
        metrics.E2E.labels(self.name).observe(time.perf_counter() - started)
        prompt_tokens = len(pending.enc.input_ids)
        return JSONResponse(
            {
                "id": cid,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.name,
                "choices": choices,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    async def complete(self, pending: GenRequest, http: Request | None) -> str:
        ((tokens, _), *_) = await _final(pending, http)
        return self.policy.tokenizer.decode(tokens, skip_special_tokens=False)

    def stop(self) -> None:
        self.engine.stop()

    async def _stream(self, request: GenRequest, sampling: Sampling, cid: str, started: float) -> AsyncIterator[str]:
        created = int(time.time())
        n = request.n
        tokens: list[list[int]] = [[] for _ in range(n)]
        sent = ["" for _ in range(n)]
        stopped = [False] * n

        def chunk(index: int, delta: dict, finish: str | None = None) -> str:
            payload = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.name,
                "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
            return f"data: {json.dumps(payload)}\n\n"

        tok = self.policy.tokenizer
        try:  # finally: the client went away (the response task is cancelled) or the stream ended
            for index in range(n):
                yield chunk(index, {"role": "assistant", "content": ""})
            while True:
                event = await request.events.get()
                if event[0] == "token":
                    _, index, token = event
                    if stopped[index]:
                        continue
                    tokens[index].append(token)
                    text, cut = cut_at_stops(tok.decode(tokens[index], skip_special_tokens=False), sampling.stop)
                    if text.endswith("\ufffd") and not cut:
                        continue  # an incomplete UTF-8 sequence: wait for the rest
                    if len(text) > len(sent[index]):
                        yield chunk(index, {"content": text[len(sent[index]) :]})
                        sent[index] = text
                    stopped[index] = cut
                elif event[0] == "done":
                    for index, (_, finished) in enumerate(event[1]):
                        reason = "stop" if stopped[index] else finished
                        metrics.SUCCESS.labels(self.name, reason).inc()
                        yield chunk(index, {}, reason)
                    metrics.E2E.labels(self.name).observe(time.perf_counter() - started)
                    yield "data: [DONE]\n\n"
                    return
                else:
                    yield f"data: {json.dumps({'error': {'message': event[1], 'type': 'internal_error'}})}\n\n"
                    return
        finally:
            request.cancelled.set()


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
