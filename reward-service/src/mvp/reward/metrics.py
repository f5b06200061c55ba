"""Prometheus metrics of the reward service (documented in docs/metrics.md)."""

from __future__ import annotations

import bisect
import threading
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from mvp.reward.core import RewardResult

_UNIT_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)

REQUESTS = Counter(
    "mvp_reward_requests_total", "Scoring requests, by transport (grpc, grpc_stream, http).", ["transport"]
)
COMPLETIONS = Counter("mvp_reward_completions_total", "Completions scored.", ["transport"])
INVALID_LABELS = Counter(
    "mvp_reward_invalid_labels_total", "Items rejected because their label was invalid.", ["transport"]
)
PARSE_FAILURES = Counter("mvp_reward_parse_failures_total", "Completions that did not parse, by reason.", ["reason"])
BATCH_SECONDS = Histogram(
    "mvp_reward_batch_seconds",
    "Time to score one request's batch (library time, without transport).",
    ["transport"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
)
BATCH_SIZE = Histogram(
    "mvp_reward_batch_size", "Completions per request.", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096)
)


class _BatchHistogram(Collector):
    """A histogram observed a batch at a time: one lock and one pass per batch instead of
    prometheus_client's lock per value (per-value observe cost as much as scoring the completion).
    Exposed exactly as a Histogram of the same name and buckets is."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...], registry=REGISTRY) -> None:
        self.name, self.documentation, self.bounds = name, documentation, buckets
        self._counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: list[float]) -> None:
        counts = [0] * len(self._counts)
        for v in values:
            counts[bisect.bisect_left(self.bounds, v)] += 1
        total = sum(values)
        with self._lock:
            for i, c in enumerate(counts):
                self._counts[i] += c
            self._sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, c in zip([*map(str, self.bounds), "+Inf"], counts, strict=True):
            running += c
            cumulative.append((bound, running))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], cumulative, total)
        yield family


REWARD = _BatchHistogram("mvp_reward_value", "Distribution of the total reward.", _UNIT_BUCKETS)
COMPONENT_SUM = Counter(
    "mvp_reward_component_sum", "Sum of each reward component (divide by completions for the mean).", ["component"]
)

_COMPONENTS = ("format", "selection", "ordering", "exact", "soft")
_COMPONENT_COUNTERS = {name: COMPONENT_SUM.labels(name) for name in _COMPONENTS}


def record(results: list[RewardResult], transport: str, seconds: float) -> None:
    """Records one scored batch. Components are summed per batch to keep the hot path cheap."""
    REQUESTS.labels(transport).inc()
    COMPLETIONS.labels(transport).inc(len(results))
    BATCH_SECONDS.labels(transport).observe(seconds)
    BATCH_SIZE.observe(len(results))
    sums = dict.fromkeys(_COMPONENTS, 0.0)
    failures: Tally[str] = Tally()
    REWARD.observe_many([r.reward for r in results])
    for r in results:
        if r.failure_reason:
            failures[r.failure_reason] += 1
            continue
        sums["format"] += r.format
        sums["selection"] += r.selection
        sums["ordering"] += r.ordering
        sums["exact"] += r.exact
        sums["soft"] += r.soft
    for name, total in sums.items():
        if total:
            _COMPONENT_COUNTERS[name].inc(total)
    for reason, count in failures.items():
        PARSE_FAILURES.labels(reason).inc(count)
