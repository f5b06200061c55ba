"""Held-out evaluation through the reward-service: greedy answers, scored by the same reward the
training used, aggregated into mean reward, exact / selection / ordering, format rate and chance."""

from __future__ import annotations

import math
from collections.abc import Callable

from mvp.model.policy import Policy
from mvp.trainer.data import Example


def chance_exact(examples: list[Example]) -> float:
    """Mean probability that a uniformly random well-formed answer is exactly right."""
    return sum(1.0 / math.perm(e.num_candidates, e.k) for e in examples) / max(1, len(examples))


def evaluate(
    policy: Policy,
    examples: list[Example],
    score: Callable[[list[str], list[str]], list],
    max_new_tokens: int = 16,
    encoded: Callable | None = None,
) -> dict[str, float]:
    policy.model.eval()
    texts = []
    for ex in examples:
        enc = encoded(ex) if encoded else policy.encode(ex.prompt, ex.images)
        texts.extend(policy.decode(policy.sample(enc, 1, max_new_tokens, 1.0, greedy=True)))
    results = score(texts, [e.label_json for e in examples])
    n = max(1, len(results))
    return {
        "samples": len(results),
        "mean_reward": sum(r.reward for r in results) / n,
        "exact": sum(r.components.exact for r in results) / n,
        "selection": sum(r.components.selection for r in results) / n,
        "ordering": sum(r.components.ordering for r in results) / n,
        "format": sum(r.components.format for r in results) / n,
        "chance_exact": chance_exact(examples),
    }
