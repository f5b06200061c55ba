"""`mvp serve`'s pure ASGI middlewares: the API key, shedding generation requests while the queue
is full, and the request body's size. Each answers with an OpenAI error object before any route
runs, and none reads a body it does not need."""

from __future__ import annotations

from mvp.common.auth import bearer_matches
from mvp.inference.api import Admission, ApiError


def queue_full(limit: int) -> ApiError:
    """The answer to a request that finds ``max_queue`` requests already waiting."""
    return ApiError(
        429,
        f"the server is busy: {limit} requests are waiting; retry shortly",
        kind="rate_limit_error",
        code="queue_full",
        headers={"Retry-After": "1"},
    )


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

    def __init__(self, app, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] in GENERATION_PATHS and self.admission.full():
            await queue_full(self.admission.limit)(scope, receive, send)
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
            if not bearer_matches(given, self.api_key):
                kind = "invalid_api_key" if given else "missing_api_key"
                error = ApiError(401, "a valid API key is required (Authorization: Bearer <key>)", code=kind)
                await error(scope, receive, send)
                return
        await self.app(scope, receive, send)


GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/mvp/predict"})
