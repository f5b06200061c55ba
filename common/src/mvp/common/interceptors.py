"""Helpers for the project's gRPC server interceptors, and the request gate every server puts in
front of its handlers: malformed requests are INVALID_ARGUMENT, calls beyond the concurrency limit
are RESOURCE_EXHAUSTED (health checks never are), large requests are parsed off the event loop, a
request stream that sends nothing for too long is ended. Another transport of the same server (the
reward-service's HTTP port) claims its slots from the same gate."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator

import grpc


async def stream_items(handler, request_or_iterator, context: grpc.aio.ServicerContext) -> AsyncIterator:
    """The responses of a server-streaming handler of either style grpc.aio allows: an async
    generator (its items are yielded here), or a coroutine that sends with ``context.write`` (it
    is awaited here and yields nothing; grpc.health's ``Watch`` is one)."""
    result = handler(request_or_iterator, context)
    if inspect.isasyncgen(result):
        async for item in result:
            yield item
    else:
        await result


# Requests larger than this are parsed in a worker thread, not on the event loop: a burst of
# large messages must not delay health checks or small calls that arrive meanwhile.
PARSE_INLINE_BYTES = 64 * 1024
# Always answered, never counted against the concurrency limit: a liveness probe must not fail
# because the server is busy with real work.
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class _Malformed:
    """Stands in for a request message that did not parse."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class _Deferred:
    """A large request's bytes, parsed later off the event loop."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def _try_parse(deserializer, data: bytes):
    try:
        return deserializer(data)
    except Exception as exc:  # noqa: BLE001 - DecodeError, invalid UTF-8 in a string field, ...
        return _Malformed(exc)


def _gate_parser(deserializer, defer: bool):
    if deserializer is None:
        return None

    def parse(data: bytes):
        if defer and len(data) > PARSE_INLINE_BYTES:
            return _Deferred(data)
        return _try_parse(deserializer, data)

    return parse


async def _checked(request, deserializer, context: grpc.aio.ServicerContext):
    """The parsed request; a deferred one is parsed in a worker thread; a malformed one aborts."""
    if isinstance(request, _Deferred):
        request = await asyncio.to_thread(_try_parse, deserializer, request.data)
    if isinstance(request, _Malformed):
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"request is not a valid protobuf message: {type(request.error).__name__}"
        )
    return request


class GateRefusedError(Exception):
    """No slot for a call that did not come through gRPC: the gate is full (``code`` is
    RESOURCE_EXHAUSTED) or the server drains (UNAVAILABLE). ``str()`` is the reason to send back."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Slots:
    """Counts calls in flight; ``None`` limit = unlimited.

    ``in_flight`` counts handlers running (the concurrency limit); ``open`` counts calls until gRPC
    reports them terminated, which for a large response is after its last bytes were handed to the
    connection, well after the handler returned. ``last_closed`` is when the latest one terminated
    (``time.monotonic``). Once ``closing``, new calls are UNAVAILABLE (a client retries elsewhere)."""

    def __init__(self, limit: int | None) -> None:
        self.limit, self.in_flight, self.open = limit, 0, 0
        self.last_closed = float("-inf")
        self.closing = False
        self.idle = asyncio.Event()  # set while nothing is open
        self.idle.set()

    def _refusal(self) -> GateRefusedError | None:
        if self.closing:
            return GateRefusedError(grpc.StatusCode.UNAVAILABLE, "server is shutting down; retry on another replica")
        if self.limit is not None and self.in_flight >= self.limit:
            return GateRefusedError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server busy: {self.in_flight} calls in flight (max_concurrent_rpcs={self.limit}); retry later",
            )
        return None

    def _opened(self) -> None:
        self.in_flight += 1
        self.open += 1
        self.idle.clear()

    def _closed(self, _context: object) -> None:
        self.open -= 1
        self.last_closed = time.monotonic()
        if not self.open:
            self.idle.set()

    @contextlib.asynccontextmanager
    async def hold(self, context: grpc.aio.ServicerContext):
        refused = self._refusal()
        if refused is not None:
            await context.abort(refused.code, str(refused))
        self._opened()
        context.add_done_callback(self._closed)
        try:
            yield
        finally:
            self.in_flight -= 1

    @contextlib.contextmanager
    def claim(self):
        refused = self._refusal()
        if refused is not None:
            raise refused
        self._opened()
        try:
            yield
        finally:
            self.in_flight -= 1
            self._closed(None)


class RequestGateInterceptor(grpc.aio.ServerInterceptor):
    """Every request passes here before its handler:

    - corrupt protobuf bytes (or invalid UTF-8 in a string field) are INVALID_ARGUMENT naming the
      problem, not the INTERNAL/UNKNOWN gRPC answers when its own deserializer raises;
    - at most ``max_concurrent`` calls run at once; more are RESOURCE_EXHAUSTED before their request
      is parsed (grpc's own ``maximum_concurrent_rpcs`` would count, and so reject, health checks too);
    - a unary request over ``PARSE_INLINE_BYTES`` is parsed in a worker thread;
    - a request stream that sends no message for ``stream_idle_s`` is ended CANCELLED with the
      reason, so idle streams cannot hold every slot (``None``: streams may idle for ever);
    - on shutdown, ``drain`` refuses new calls and lets the open ones finish and reach their clients.

    Health and reflection (``EXEMPT_PREFIXES``) are never limited nor deferred.
    """

    def __init__(self, max_concurrent: int | None = None, stream_idle_s: float | None = None) -> None:
        self._slots = _Slots(max_concurrent)
        self._free = _Slots(None)
        self._stream_idle_s = stream_idle_s

    def claim(self) -> contextlib.AbstractContextManager[None]:
        """Holds one slot of the concurrency limit for a call that another transport of this server
        received (the reward-service's HTTP port); raises ``GateRefusedError`` when none is free or
        the server drains. The slot counts, and is waited for by ``drain``, like a gRPC call's."""
        return self._slots.claim()

    async def drain(self, deadline: float, linger_s: float) -> None:
        """Refuses new calls (UNAVAILABLE; health and reflection still answer), waits until
        ``deadline`` (``time.monotonic``) at most for the open ones to terminate, then keeps the
        connections up until ``linger_s`` after the last one did, so a client that reads its
        response late still gets all of it (closing a connection with a response still in the
        client's socket buffer resets it, and the client loses the response). Returns early when
        nothing is open or lingering."""
        self._slots.closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slots.idle.wait(), max(0.0, deadline - time.monotonic()))
        linger_until = min(self._slots.last_closed + linger_s, deadline)
        if linger_until > time.monotonic():
            await asyncio.sleep(linger_until - time.monotonic())

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        exempt = handler_call_details.method.startswith(EXEMPT_PREFIXES)
        slots = self._free if exempt else self._slots
        raw_des, ser = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(request, context):
                async with slots.hold(context):
                    return await inner_uu(await _checked(request, raw_des, context), context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, _gate_parser(raw_des, not exempt), ser)
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            async def unary_stream(request, context):
                async with slots.hold(context):
                    async for item in stream_items(inner_us, await _checked(request, raw_des, context), context):
                        yield item

            return grpc.unary_stream_rpc_method_handler(unary_stream, _gate_parser(raw_des, not exempt), ser)

        # Streamed requests are parsed as they arrive (each message is small in the project's APIs).
        des = _gate_parser(raw_des, False)
        idle_s = None if exempt else self._stream_idle_s

        async def checked(requests, context):
            messages = aiter(requests)
            while True:
                try:
                    async with asyncio.timeout(idle_s):
                        request = await anext(messages)
                except StopAsyncIteration:
                    return
                except TimeoutError:  # CANCELLED: clients read DEADLINE_EXCEEDED as their own deadline
                    await context.abort(
                        grpc.StatusCode.CANCELLED,
                        f"the stream sent no message for {idle_s:g} s (stream_idle_s): ended to free its slot; "
                        "open a stream when there is something to send",
                    )
                yield await _checked(request, raw_des, context)

        if handler.stream_unary is not None:
            inner_su = handler.stream_unary

            async def stream_unary(requests, context):
                async with slots.hold(context):
                    return await inner_su(checked(requests, context), context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, des, ser)
        inner_ss = handler.stream_stream

        async def stream_stream(requests, context):
            async with slots.hold(context):
                async for item in stream_items(inner_ss, checked(requests, context), context):
                    yield item

        return grpc.stream_stream_rpc_method_handler(stream_stream, des, ser)
