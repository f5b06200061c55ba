"""Prometheus metrics named and labelled like vLLM's, so dashboards work across backends."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_TOKEN_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)

RUNNING = Gauge("vllm:num_requests_running", "Requests being generated.", ["model_name"])
WAITING = Gauge(
    "vllm:num_requests_waiting",
    "Requests admitted and waiting for generation (media being fetched and decoded, prompt tokenized, queued).",
    ["model_name"],
)
PROMPT_TOKENS = Counter("vllm:prompt_tokens", "Prompt tokens processed.", ["model_name"])
GENERATION_TOKENS = Counter("vllm:generation_tokens", "Tokens generated.", ["model_name"])
SUCCESS = Counter("vllm:request_success", "Requests finished, by finish reason.", ["model_name", "finished_reason"])
TTFT = Histogram(
    "vllm:time_to_first_token_seconds", "Time to the first generated token.", ["model_name"], buckets=_LATENCY
)
ITL = Histogram(
    "vllm:inter_token_latency_seconds", "Time between generated tokens.", ["model_name"], buckets=_TOKEN_LATENCY
)
E2E = Histogram(
    "vllm:e2e_request_latency_seconds", "Request latency, arrival to last token.", ["model_name"], buckets=_LATENCY
)
