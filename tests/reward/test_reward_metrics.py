"""The reward distribution histogram, observed a batch at a time, exposes what prometheus_client's
own Histogram exposes for the same values (buckets, edges included, count and sum)."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from mvp.reward import metrics

pytestmark = pytest.mark.unit


def _samples(text: str, name: str) -> dict[str, str]:
    return {
        line.split(" ")[0]: line.split(" ")[1]
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith(f"{name}_created")
    }


def test_batch_histogram_matches_prometheus_histogram() -> None:
    rng = random.Random(0)
    # edges, values between them, beyond the last bucket and below the first
    values = [*metrics._UNIT_BUCKETS, 1.5, -0.1, *(rng.random() for _ in range(500))]
    registry = CollectorRegistry()
    reference = Histogram("probe_value", "x", buckets=metrics._UNIT_BUCKETS, registry=registry)
    for v in values:
        reference.observe(v)
    mine = CollectorRegistry()
    ours = metrics._BatchHistogram("probe_value", "x", metrics._UNIT_BUCKETS, registry=mine)
    ours.observe_many(values[:100])
    ours.observe_many(values[100:])
    expected = _samples(generate_latest(registry).decode(), "probe_value")
    got = _samples(generate_latest(mine).decode(), "probe_value")
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert float(got[key]) == pytest.approx(float(value)), key


@pytest.mark.unit
def test_the_reward_service_scores_on_one_worker_thread_by_default() -> None:
    """Scoring holds the interpreter lock: a second thread lowered throughput and made health checks
    wait (docs/reward-service.md); the shared default (2, for synth's store I/O) is not the reward's."""
    from mvp.common.settings import GrpcServerSettings
    from mvp.reward.settings import RewardServerSettings

    assert RewardServerSettings().worker_threads == 1
    assert GrpcServerSettings.model_fields["worker_threads"].default == 2
    assert RewardServerSettings(worker_threads=3).worker_threads == 3
