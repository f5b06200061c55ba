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


def test_sets_of_different_configs_draw_independent_windows() -> None:
    """No twins: a K=1 set next to a K=2 set of the same video (and seed) must not reuse its windows.
    Before the seed took the config's digest, every sample pair started its walk on the same frame."""
    emb = walk(120, seed=3)
    times = [float(i) for i in range(120)]
    common = {"num_distractors": 3, "samples_per_video": 16, "kappa": 0.99, "seed": 5}
    k2 = plan_samples(emb, times, SynthConfig(num_frames=4, num_masked=2, **common), "v")
    k1 = plan_samples(emb, times, SynthConfig(num_frames=3, num_masked=1, **common), "v")
    same_start = sum(a.context[0] == b.context[0] for a, b in zip(k1, k2, strict=True))
    same_answer_frame = sum(a.positives[0] == b.positives[0] for a, b in zip(k1, k2, strict=True))
    assert len(k1) == len(k2) == 16
    assert same_start <= 3 and same_answer_frame <= 3, (same_start, same_answer_frame)
    # and the same config still reproduces itself exactly
    again = plan_samples(emb, times, SynthConfig(num_frames=3, num_masked=1, **common), "v")
    assert [p.candidates for p in again] == [p.candidates for p in k1]
