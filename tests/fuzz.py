"""Helpers of the per-service fuzz tests: random bytes, random JSON and random protobuf messages
sent at every endpoint of a running server; the server must answer each with a client error (4xx /
INVALID_ARGUMENT and friends), never a 5xx / UNKNOWN / INTERNAL, and stay up."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
from hypothesis import strategies as st

# gRPC codes a server may answer hostile input with; UNKNOWN and INTERNAL mean it crashed on it.
CLIENT_CODES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.ALREADY_EXISTS,
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
bodies = st.one_of(
    st.binary(max_size=2048),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "query": st.lists(st.text(max_size=60), max_size=4),
            "labels": st.lists(st.one_of(st.text(max_size=60), json_values.map(json.dumps)), max_size=4),
            "prompts": st.lists(st.text(max_size=20), max_size=4),
            "model": st.text(max_size=12),
            "messages": json_values,
            "sample": json_values,
            "max_tokens": st.integers(),
            "seed": st.integers(),
        },
    ).map(lambda d: json.dumps(d).encode()),
)


def http_status(url: str, body: bytes | None, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code


def grpc_code(channel: grpc.Channel, method: str, payload: bytes, kind: str = "unary_unary") -> grpc.StatusCode:
    """Sends raw bytes as the request of ``method``; returns the status code."""
    identity = {"request_serializer": None, "response_deserializer": None}
    try:
        if kind == "unary_unary":
            channel.unary_unary(method, **identity)(payload, timeout=30)
        elif kind == "unary_stream":
            for _ in channel.unary_stream(method, **identity)(payload, timeout=5):
                break
        else:
            for _ in channel.stream_stream(method, **identity)(iter([payload]), timeout=30):
                pass
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK
