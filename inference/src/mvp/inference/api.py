"""The HTTP API's shapes, shared by the routes and both backends: OpenAI error objects, the request
bodies, the sampling a request asks for, and the interface a generation backend implements."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from PIL import Image
from pydantic import BaseModel, Field

from mvp.inference import metrics


class ApiError(Exception):
    """A request's failure as an OpenAI error object (``{"error": {message, type, param, code}}``)."""

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


@dataclass(frozen=True)
class Sampling:
    """What a request asks the backend to generate (its limits already checked)."""

    max_tokens: int
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # when the request arrived: latency metrics (TTFT, end to end) count from here, as vLLM's do
    arrival: float = field(default_factory=time.perf_counter, compare=False)

    @classmethod
    def of(cls, body: ChatRequest, max_tokens: int) -> Sampling:
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        return cls(max_tokens, body.n, body.temperature, body.top_p, body.seed, tuple(stops))


def cut_at_stops(text: str, stops: tuple[str, ...] | list[str]) -> tuple[str, bool]:
    """``text`` up to its first stop string, and whether one was found."""
    cuts = [text.find(s) for s in stops if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


class Admission:
    """The one bound on waiting requests (``max_queue``). A request counts from the moment it is
    admitted (before its media are fetched and decoded or its prompt tokenized) until it starts
    generating or fails, wherever it waits meanwhile: being prepared, in the queue, or in the
    batcher's pending list (requests that could not join the batch being formed). Thread-safe: the
    generation thread lets requests go. ``vllm:num_requests_waiting`` is this count."""

    def __init__(self, limit: int, model_name: str) -> None:
        self.limit = limit
        self.model_name = model_name
        self.count = 0
        self._lock = threading.Lock()

    def full(self) -> bool:
        return self.count >= self.limit

    def enter(self) -> bool:
        """Counts one more request; False (nothing counted) when ``limit`` already wait."""
        with self._lock:
            if self.count >= self.limit:
                return False
            self.count += 1
        metrics.WAITING.labels(self.model_name).inc()
        return True

    def leave(self, n: int = 1) -> None:
        with self._lock:
            self.count -= n
        metrics.WAITING.labels(self.model_name).dec(n)


@runtime_checkable
class Backend(Protocol):
    """Where a request's generation happens. The server does everything else for both backends (the
    routes, authentication, media under the allow-lists and budgets, request limits, admission): a
    backend is handed a prompt that passed those checks.

    A request is ``prepare``d while it counts against ``max_queue`` (``admission``), then answered
    by ``respond`` (a chat completion, plain or streamed) or ``complete`` (the first choice's text,
    for /v1/mvp/predict)."""

    kind: str  # "transformers" or "vllm", as /health reports it
    admission: Admission  # the one bound on waiting requests
    model_root: str  # /v1/models' "root"
    # True: a prepared request stays counted in ``admission`` until the backend lets it go (the
    # transformers engine, when its batch starts); False: it leaves once prepared (vLLM queues it)
    holds_admission: bool

    async def healthy(self) -> bool: ...

    async def metrics(self) -> PlainTextResponse: ...

    async def prepare(self, messages: list[dict], images: list[Image.Image], sampling: Sampling, param: str) -> object:
        """Makes the request ready to generate (prompt tokens counted against ``max_prompt_tokens``
        where the backend tokenizes) and, where the backend queues it itself, queues it. Called
        inside ``App.admitted``; ``param`` names the request field an error points at."""
        ...

    async def respond(
        self, pending: object, sampling: Sampling, stream: bool, http: Request
    ) -> JSONResponse | StreamingResponse:
        """The chat completion of a prepared request, as the OpenAI API answers it."""
        ...

    async def complete(self, pending: object, http: Request | None) -> str:
        """The first choice's text of a prepared request."""
        ...

    def stop(self) -> None: ...
