"""Intervals for held-out measurements: a percentile bootstrap of one checkpoint's mean and the paired
bootstrap of the difference between two checkpoints (or a run and its control) on the same samples.
Pure Python (seeded), so a report and a benchmark give the same interval for the same rows."""

from __future__ import annotations

import random
from collections.abc import Sequence

RESAMPLES = 4000
LEVEL = 0.95


def _percentiles(values: list[float], level: float) -> list[float]:
    values = sorted(values)
    lo = values[int((1 - level) / 2 * (len(values) - 1))]
    hi = values[int((1 + level) / 2 * (len(values) - 1))]
    return [round(lo, 4), round(hi, 4)]


def bootstrap_ci(
    values: Sequence[float], resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0
) -> list[float]:
    """The ``level`` percentile interval of the mean of ``values`` (per-sample scores)."""
    n = len(values)
    if n == 0:
        return [0.0, 0.0]
    rng = random.Random(seed)
    means = [sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples)]
    return _percentiles(means, level)


def paired_difference(
    after: dict[str, float], before: dict[str, float], resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0
) -> dict:
    """after - before over the samples both measured (by sample id): the mean difference and its paired
    bootstrap interval (samples resampled together, so what is common to both cancels)."""
    ids = sorted(set(after) & set(before))
    diffs = [after[i] - before[i] for i in ids]
    if not diffs:
        return {"samples": 0, "mean": 0.0, "ci": [0.0, 0.0]}
    return {
        "samples": len(ids),
        "mean": round(sum(diffs) / len(diffs), 4),
        "ci": bootstrap_ci(diffs, resamples, level, seed),
    }


def per_sample(rows: list[dict], key: str) -> dict[str, float]:
    """{sample_id: row[key]} of ``evaluate``'s per-sample rows."""
    return {row["sample_id"]: float(row[key]) for row in rows}
