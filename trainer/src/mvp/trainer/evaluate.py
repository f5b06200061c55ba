"""Held-out evaluation through the reward-service: greedy answers, scored by the same reward the
training used, aggregated into mean reward, exact / selection / ordering, format rate and chance."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from mvp.model.policy import Policy
from mvp.trainer.data import Example

_COMPONENTS = ("exact", "selection", "ordering", "format")  # averaged, in the report's order


def chance_exact(examples: list[Example]) -> float:
    """Mean probability that a uniformly random well-formed answer is exactly right."""
    return sum(1.0 / math.perm(e.num_candidates, e.k) for e in examples) / max(1, len(examples))


def evaluate(
    policy: Policy,
    examples: list[Example],
    score: Callable[[list[str], list[str]], list],
    max_new_tokens: int = 16,
    encoded: Callable | None = None,
    predictions: list[dict] | None = None,
) -> dict[str, float]:
    """Aggregates over ``examples``; when ``predictions`` is a list, one record per sample is appended
    to it (its id, the greedy answer's text, the ground truth and the reward's components), so a
    researcher can see *which* answers moved, not only the means."""
    policy.model.eval()
    texts = []
    for ex in examples:
        enc = encoded(ex) if encoded else policy.encode(ex.prompt, ex.images)
        texts.extend(policy.decode(policy.sample(enc, 1, max_new_tokens, 1.0, greedy=True)))
    results = score(texts, [e.label_json for e in examples])
    rows = [
        {
            "sample_id": ex.id,
            "completion": text,
            "ground_truth": ex.answer,
            "num_candidates": ex.num_candidates,
            "reward": r.reward,
            **{key: getattr(r.components, key) for key in _COMPONENTS},
        }
        for ex, text, r in zip(examples, texts, results, strict=True)
    ]
    if predictions is not None:
        predictions.extend(rows)
    n = max(1, len(rows))
    return {
        "samples": len(rows),
        "mean_reward": sum(row["reward"] for row in rows) / n,
        **{key: sum(row[key] for row in rows) / n for key in _COMPONENTS},
        "chance_exact": chance_exact(examples),
    }


def write_predictions(path: Path, records: list[dict]) -> None:
    """One JSON object per line, in the samples' order (see ``evaluate``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
