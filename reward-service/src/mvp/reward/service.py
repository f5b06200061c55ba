"""`mvp reward serve`: the reward library behind gRPC (batched and streaming) and OpenRLHF's HTTP
remote-reward protocol, in one asyncio process. The service adds transport, limits and metrics;
every score comes from ``mvp.reward.core``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import json.scanner
import logging
import ssl
import time
from collections.abc import AsyncIterator

import grpc
from aiohttp import web

from mvp.common.auth import bearer_matches
from mvp.common.grpc_server import GrpcServer, ServiceBinding, serve
from mvp.common.interceptors import PARSE_INLINE_BYTES, GateRefusedError, RequestGateInterceptor
from mvp.reward import core, metrics
from mvp.reward.openrlhf import response_from_query, to_openrlhf
from mvp.reward.settings import RewardServerSettings
from mvp.v1 import reward_pb2, reward_pb2_grpc, sample_pb2

log = logging.getLogger(__name__)

_CONFIG_FIELDS = tuple(core.RewardConfig.model_fields)


# Score requests up to this size are scored on the event loop (a batch of 64 completions is ~10 KiB
# and takes ~0.5 ms); larger ones in a worker thread, so health checks and small calls stay answered.
SCORE_INLINE_BYTES = 32 * 1024


def reward_config(settings: RewardServerSettings) -> core.RewardConfig:
    return core.RewardConfig(**{name: getattr(settings, name) for name in _CONFIG_FIELDS})


def label_from_proto(label: sample_pb2.Label) -> core.Label:
    return core.Label(
        answer=tuple(label.answer),
        num_candidates=label.num_candidates,
        index_base=label.index_base if label.HasField("index_base") else 1,
        candidate_times_s=tuple(label.candidate_times_s),
        gap_start_s=label.gap_start_s,
        gap_end_s=label.gap_end_s,
    )


class ResultProtos:
    """``result_to_proto`` remembered by value. Building a RewardResult message costs ~30 us of
    Python, a third of scoring the completion; the results of a GRPO batch repeat (a group's members
    often give the same answer, and K indices of a few candidates have few outcomes), so each
    distinct result (its numbers, failure and parsed answer) is built once and copied from then on.
    Results with per-index slots are built every time. Bounded: emptied when ``limit`` are held."""

    def __init__(self, limit: int = 8192) -> None:
        self.limit = limit
        self._built: dict[tuple, reward_pb2.RewardResult] = {}

    def __call__(self, r: core.RewardResult) -> reward_pb2.RewardResult:
        if r.slots:
            return result_to_proto(r)
        key = (r.reward, r.format, r.selection, r.ordering, r.exact, r.soft)
        key += (r.failure_reason, r.failure_detail, tuple(r.parsed_answer))
        message = self._built.get(key)
        if message is None:
            if len(self._built) >= self.limit:
                self._built.clear()
            message = self._built[key] = result_to_proto(r)
        return message


RESULT_PROTOS = ResultProtos()


def result_to_proto(result: core.RewardResult) -> reward_pb2.RewardResult:
    return reward_pb2.RewardResult(
        reward=result.reward,
        components=reward_pb2.RewardComponents(
            format=result.format,
            selection=result.selection,
            ordering=result.ordering,
            exact=result.exact,
            soft=result.soft,
        ),
        failure_reason=result.failure_reason,
        failure_detail=result.failure_detail,
        parsed_answer=result.parsed_answer,
        slots=None
        if not result.slots
        else [
            reward_pb2.AnswerSlot(
                start=slot.start, end=slot.end, selected=slot.selected, in_place=slot.in_place, reward=slot.reward
            )
            for slot in result.slots
        ],
    )


class RewardScorer:
    """Resolves labels and per-request config overrides, then calls the library."""

    def __init__(self, default: core.RewardConfig) -> None:
        self.default = default
        self._overrides: dict[bytes, core.RewardConfig] = {}

    def config_for(self, override: reward_pb2.RewardConfig | None) -> core.RewardConfig:
        if override is None or not override.ListFields():
            return self.default
        key = override.SerializeToString(deterministic=True)
        cached = self._overrides.get(key)
        if cached is None:
            values = {f.name: v for f, v in override.ListFields()}
            cached = self.default.model_validate({**self.default.model_dump(), **values})
            if len(self._overrides) < 1024:
                self._overrides[key] = cached
        return cached

    @staticmethod
    def label_of(item: reward_pb2.ScoreItem) -> core.Label:
        kind = item.WhichOneof("truth")
        if kind == "label_json":
            return core.LABELS.get(item.label_json)
        if kind == "label":
            return label_from_proto(item.label)
        raise core.InvalidLabelError("item has neither label nor label_json")


class RewardServicer(reward_pb2_grpc.RewardServiceServicer):
    def __init__(self, scorer: RewardScorer, settings: RewardServerSettings) -> None:
        self.scorer = scorer
        self.settings = settings

    async def Score(  # noqa: N802 - gRPC method name
        self, request: reward_pb2.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> reward_pb2.ScoreResponse:
        items = request.items
        if len(items) > self.settings.max_batch:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"batch of {len(items)} completions exceeds max_batch={self.settings.max_batch}; split it",
            )
        try:
            config = self.scorer.config_for(request.config if request.HasField("config") else None)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid reward config: {exc}")
        try:
            if request.ByteSize() <= SCORE_INLINE_BYTES:
                # a GRPO-sized batch scores in well under a millisecond: the thread hop would cost
                # more than the work, and the event loop is not held long enough to delay a probe
                return _score_request(items, self.scorer.label_of, config, request.include_slots)
            return await asyncio.to_thread(_score_request, items, self.scorer.label_of, config, request.include_slots)
        except _BadItemError as bad:
            metrics.INVALID_LABELS.labels("grpc").inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"items[{bad.index}]: invalid label: {bad.error}")

    async def ScoreStream(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[reward_pb2.ScoreStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[reward_pb2.ScoreStreamResponse]:
        async for request in request_iterator:
            try:
                config = self.scorer.config_for(request.config if request.HasField("config") else None)
                (result,) = await asyncio.to_thread(
                    _scored,
                    [(request.item.completion, request.item)],
                    self.scorer.label_of,
                    config,
                    "grpc_stream",
                    request.include_slots,
                )
            except (ValueError, _BadItemError) as exc:
                metrics.INVALID_LABELS.labels("grpc_stream").inc()
                error = exc.error if isinstance(exc, _BadItemError) else exc
                yield reward_pb2.ScoreStreamResponse(request_id=request.request_id, error=str(error))
                continue
            yield reward_pb2.ScoreStreamResponse(request_id=request.request_id, result=RESULT_PROTOS(result))


def _http_error(status: type[web.HTTPException], message: str, **kwargs) -> web.HTTPException:
    return status(text=json.dumps({"error": message}), content_type="application/json", **kwargs)


class _BadItemError(Exception):
    """Item ``index`` of a batch has an unusable label (``error``)."""

    def __init__(self, index: int, error: core.InvalidLabelError) -> None:
        super().__init__(str(error))
        self.index, self.error = index, error


def _scored(
    items: list, resolve, config: core.RewardConfig, transport: str, slots: bool = False
) -> list[core.RewardResult]:
    """Resolves each ``(completion, truth)`` item's label with ``resolve``, scores it and records the
    batch's metrics under ``transport``. Called in a worker thread, so neither label parsing nor
    scoring runs on the event loop (health checks and other calls stay answered); a bad label raises
    ``_BadItemError`` naming the item."""
    t0 = time.perf_counter()
    results = []
    for i, (completion, truth) in enumerate(items):
        try:
            label = resolve(truth)
        except core.InvalidLabelError as exc:
            raise _BadItemError(i, exc) from None
        results.append(core.score(completion, label, config, slots))
    metrics.record(results, transport, time.perf_counter() - t0)
    return results


def _score_request(items, resolve, config: core.RewardConfig, slots: bool = False) -> reward_pb2.ScoreResponse:
    """A gRPC Score call's work, all of it in a worker thread, the response message included (for a
    batch of thousands, building it costs more than scoring)."""
    results = _scored([(item.completion, item) for item in items], resolve, config, "grpc", slots)
    return reward_pb2.ScoreResponse(results=[RESULT_PROTOS(r) for r in results])


class _HttpError(Exception):
    """An HTTP request's failure: the status to answer, the reason, and the status's extra arguments."""

    def __init__(self, status: type[web.HTTPException], message: str, **kwargs) -> None:
        super().__init__(message)
        self.status, self.kwargs = status, kwargs

    def response(self) -> web.HTTPException:
        return _http_error(self.status, str(self), **self.kwargs)


def _parse_json(body: bytes) -> object:
    """``json.loads`` of a request body. A body over ``PARSE_INLINE_BYTES`` goes through the
    pure-Python scanner: the C one holds the interpreter lock for the whole document (0.6 s for 15
    MiB of small numbers, health checks waiting), the Python one hands it over every switch interval
    (strings are still scanned in C: a body of long completions parses as fast either way)."""
    if len(body) <= PARSE_INLINE_BYTES:
        return json.loads(body)
    decoder = json.JSONDecoder()
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    return decoder.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


def _http_items(payload: object, max_batch: int) -> list[tuple[str, str | dict]]:
    """The ``(response, label)`` items of an OpenRLHF request body, or ``_HttpError`` saying what is wrong."""
    if not isinstance(payload, dict):
        raise _HttpError(web.HTTPBadRequest, "body must be a JSON object")
    queries, prompts, labels = payload.get("query"), payload.get("prompts"), payload.get("labels")
    if not isinstance(queries, list) or not isinstance(labels, list) or len(queries) != len(labels):
        raise _HttpError(
            web.HTTPBadRequest, "expected 'query' and 'labels' lists of equal length (and optional 'prompts')"
        )
    if prompts is not None and (not isinstance(prompts, list) or len(prompts) != len(queries)):
        raise _HttpError(web.HTTPBadRequest, "'prompts' must be a list as long as 'query'")
    if len(queries) > max_batch:
        raise _HttpError(
            web.HTTPRequestEntityTooLarge,
            f"batch of {len(queries)} exceeds max_batch={max_batch}",
            max_size=max_batch,
            actual_size=len(queries),
        )
    items = []
    for i, (query, label_text) in enumerate(zip(queries, labels, strict=True)):
        prompt = prompts[i] if prompts is not None else None
        if not isinstance(query, str) or not isinstance(label_text, str | dict):
            raise _HttpError(web.HTTPBadRequest, f"item {i}: query must be a string and label a JSON string")
        items.append((response_from_query(query, prompt if isinstance(prompt, str) else None), label_text))
    return items


def _score_http(body: bytes, config: core.RewardConfig, max_batch: int) -> bytes:
    """An HTTP /score request's whole work, in one worker thread: parsing and checking the body,
    scoring, and the JSON answer (the event loop only moves bytes)."""
    try:
        payload = _parse_json(body)
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, 4300-digit ints, deep nesting
        raise _HttpError(web.HTTPBadRequest, f"body is not JSON: {str(exc)[:200]}") from None
    items = _http_items(payload, max_batch)
    try:
        results = _scored(items, _label_of_http, config, "http")
    except _BadItemError as bad:
        metrics.INVALID_LABELS.labels("http").inc()
        raise _HttpError(web.HTTPBadRequest, f"item {bad.index}: invalid label: {bad.error}") from None
    return json.dumps(to_openrlhf(results)).encode()


def _label_of_http(truth: str | dict) -> core.Label:
    return core.LABELS.get(truth) if isinstance(truth, str) else core.Label.from_dict(truth)


def _bearer_middleware(token: str):
    """The HTTP port's half of ``auth_token``: every route but /health needs ``Authorization:
    Bearer <token>`` (the gRPC port checks the same token in its interceptor)."""
    expected = token.encode()

    @web.middleware
    async def check(request: web.Request, handler):
        if request.path != "/health":
            given = request.headers.get("Authorization", "")
            if not bearer_matches(given, expected):
                reason = "invalid bearer token" if given else "missing 'Authorization: Bearer <token>' header"
                raise _http_error(web.HTTPUnauthorized, reason, headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return check


def _body_limit_middleware(max_body: int):
    """A declared Content-Length over the limit is 413 before any of the body is read (aiohttp's own
    ``client_max_size`` check reads up to the limit first; it still guards chunked bodies)."""

    @web.middleware
    async def check(request: web.Request, handler):
        if request.content_length is not None and request.content_length > max_body:
            raise _http_error(
                web.HTTPRequestEntityTooLarge,
                f"body of {request.content_length} bytes exceeds max_message_mb ({max_body} bytes)",
                max_size=max_body,
                actual_size=request.content_length,
            )
        return await handler(request)

    return check


class _BodyBudget:
    """Bytes of HTTP request bodies being read or scored at once (``limit``): beyond it a request is
    429 before its body is read, so concurrent large bodies cannot take the process's memory. One
    body is always accepted while no other is in flight (``limit`` may be below the largest body)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    @contextlib.contextmanager
    def claim(self, size: int):
        if self.used and self.used + size > self.limit:
            raise _HttpError(
                web.HTTPTooManyRequests,
                f"server busy: {self.used} bytes of request bodies in flight, this one declares {size} "
                f"(http_max_inflight_mb={self.limit >> 20}); retry later",
                headers={"Retry-After": "1"},
            )
        self.used += size
        try:
            yield
        finally:
            self.used -= size


async def _read_body(request: web.Request, max_body: int) -> bytes:
    """The body; one that grows over ``max_body`` while it arrives (a chunked one: a declared length
    is checked before) is 413 with the JSON error every other answer has."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _HttpError(
            web.HTTPRequestEntityTooLarge,
            f"body exceeds max_message_mb ({max_body} bytes)",
            max_size=max_body,
        ) from None


def make_http_app(
    scorer: RewardScorer, settings: RewardServerSettings, gate: RequestGateInterceptor
) -> web.Application:
    """OpenRLHF's remote-reward endpoint: POST / or /score or /get_reward. Each request holds one of
    ``gate``'s slots (the gRPC port's concurrency limit, shared) and its share of the body budget
    while it is read and scored; either one full is 429 (503 while the server drains), with
    Retry-After."""
    max_body = settings.max_message_mb * 1024 * 1024
    budget = _BodyBudget(settings.http_max_inflight_mb * 1024 * 1024)

    async def handle(request: web.Request) -> web.Response:
        declared = request.content_length if request.content_length is not None else max_body
        try:
            with gate.claim(), budget.claim(declared):
                body = await _read_body(request, max_body)
                answer = await asyncio.to_thread(_score_http, body, scorer.default, settings.max_batch)
        except GateRefusedError as refused:
            status = (
                web.HTTPServiceUnavailable if refused.code == grpc.StatusCode.UNAVAILABLE else web.HTTPTooManyRequests
            )
            raise _http_error(status, str(refused), headers={"Retry-After": "1"}) from None
        except _HttpError as error:
            raise error.response() from None
        return web.Response(body=answer, content_type="application/json")

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    middlewares = [_body_limit_middleware(max_body)]
    if settings.auth_token:
        middlewares.insert(0, _bearer_middleware(settings.auth_token.get_secret_value()))
    app = web.Application(client_max_size=max_body, middlewares=middlewares)
    for path in ("/", "/score", "/get_reward"):
        app.router.add_post(path, handle)
    app.router.add_get("/health", healthz)
    return app


async def run_server(settings: RewardServerSettings) -> None:
    """Runs gRPC and (if configured) the HTTP endpoint until SIGTERM/SIGINT, then drains both."""
    scorer = RewardScorer(reward_config(settings))
    binding = ServiceBinding(
        reward_pb2_grpc.add_RewardServiceServicer_to_server,
        RewardServicer(scorer, settings),
        reward_pb2.DESCRIPTOR.services_by_name["RewardService"].full_name,
    )
    server = GrpcServer(settings, [binding], stream_idle_s=settings.stream_idle_s)
    runner: web.AppRunner | None = None

    async def start_http(_: GrpcServer) -> None:
        nonlocal runner
        if settings.http_port is None:
            return
        runner = web.AppRunner(make_http_app(scorer, settings, server.gate), access_log=None)
        await runner.setup()
        ssl_context = None
        if settings.tls_cert_file is not None:  # the same certificate as the gRPC port
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
            if settings.tls_client_ca_file is not None:
                ssl_context.load_verify_locations(settings.tls_client_ca_file)
                ssl_context.verify_mode = ssl.CERT_REQUIRED
        site = web.TCPSite(runner, settings.host, settings.http_port, ssl_context=ssl_context)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1] if site._server else settings.http_port  # type: ignore[union-attr]
        log.info("openrlhf http endpoint listening", extra={"http_port": bound, "path": "/score"})

    async def stop_http() -> None:
        if runner is not None:
            await runner.shutdown()
            await runner.cleanup()

    await serve(server, on_started=start_http, on_stopping=stop_http)


def main(settings: RewardServerSettings) -> None:
    asyncio.run(run_server(settings))
