"""The sample planner's distractor strategies, on synthetic embeddings (a random walk, so
similarity falls with time distance like real footage)."""

from __future__ import annotations

import numpy as np
import pytest

from mvp.common.synth_config import SynthConfig
from mvp.synth.pipeline import plan_samples

pytestmark = pytest.mark.unit


def walk(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(n, 64)) * 0.3
    emb = np.cumsum(steps, axis=0) + rng.normal(size=64)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_uniform_and_nearest_distractors_respect_the_neighbourhood() -> None:
    emb = walk(120)
    times = [float(i) for i in range(120)]
    base = {"num_frames": 5, "num_masked": 2, "num_distractors": 3, "samples_per_video": 8, "kappa": 0.99}
    near = plan_samples(emb, times, SynthConfig(**base, distractor_sampling="nearest"), "v")
    unif = plan_samples(emb, times, SynthConfig(**base, distractor_sampling="uniform", neighbourhood_s=20), "v")
    for plans in (near, unif):
        for p in plans:
            assert len(p.candidates) == 5 and not set(p.candidates) & set(p.context)
            assert sorted(p.answer) == sorted(p.candidates.index(x) + 1 for x in p.positives)
    assert all(d <= 20 for p in unif for d in p.distractor_distance_s)
    mean = lambda plans: np.mean([d for p in plans for d in p.distractor_distance_s])  # noqa: E731
    # Nearest-first takes the closest frames; uniform spreads over the radius.
    assert mean(near) < mean(unif)
    assert SynthConfig(**base).distractor_sampling == "nearest"  # the default keeps sample ids stable
