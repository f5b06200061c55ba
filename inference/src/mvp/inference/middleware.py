"""`mvp serve`'s pure ASGI middlewares: the API key, shedding generation requests while the queue
is full, and the request body's size. Each answers with an OpenAI error object before any route
runs, and none keeps a body it does not need: a request turned away has its body read and dropped
first (bounded, ``drain_then``), so the client, still sending, reads the answer instead of a reset."""

from __future__ import annotations

import asyncio

from mvp.common.auth import bearer_matches
from mvp.inference.api import Admission, ApiError

# How much of a turned-away request's body is read and dropped before the answer, and for how long.
# Closing a connection with unread bytes makes the kernel send a reset, and a client still sending
# its body (every HTTP/1.1 client sends it all before reading) then sees "connection reset" where
# the 413/429/401 should be. Past either bound the connection is closed anyway: a client that sends
# more, or more slowly, is not one an answer is owed to.
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 5.0


async def drain_then(answer: ApiError, scope, receive, send) -> None:
    """Reads and drops the request body (at most ``DRAIN_BYTES``, ``DRAIN_SECONDS``), then sends ``answer``.
    Nothing read is kept; a body declared larger than the bound is not read at all."""
    declared = dict(scope.get("headers") or []).get(b"content-length")
    if declared is None or (declared.isdigit() and int(declared) <= DRAIN_BYTES):
        loop = asyncio.get_running_loop()
        deadline, drained = loop.time() + DRAIN_SECONDS, 0
        while drained <= DRAIN_BYTES:
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                break
            if message["type"] != "http.request":
                return  # the client has gone: nobody to answer
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
    await answer(scope, receive, send)


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
                chunks.clear()
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
        await drain_then(ApiError(413, f"request body over {mib} MiB"), scope, receive, send)


class ShedWhenBusy:
    """ASGI middleware: while the generation queue is full, a generation request is answered 429
    before its body is parsed or tokenized (only read to be dropped: under a burst most requests are
    turned away, and doing that work for each of them delayed every other request, health checks
    included)."""

    def __init__(self, app, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] in GENERATION_PATHS and self.admission.full():
            await drain_then(queue_full(self.admission.limit), scope, receive, send)
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
                await drain_then(error, scope, receive, send)
                return
        await self.app(scope, receive, send)


GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/mvp/predict"})
