"""The feature-bound solvers answer MVP right when features do encode time, and the gap position is
read from the prompt as synth-service renders it."""

from __future__ import annotations

import math
import random

import pytest
import torch

from mvp.common.sample import render_prompt
from tests.benchmarks.scripts import load_benchmark

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def bound():
    return load_benchmark("research/feature_bound")


def at(t: float) -> torch.Tensor:
    """A unit vector whose similarity to another falls with their distance in time."""
    return torch.tensor([math.cos(0.3 * t), math.sin(0.3 * t)])


def test_path_solver_recovers_the_gap_from_time_encoding_features(bound):
    rng = random.Random(0)
    for _ in range(20):
        times = list(range(10))
        gap, k = 3, 3
        context = times[:gap] + times[gap + k : 8]
        positives = times[gap : gap + k]
        distractors = [8, 9, 0.5]  # after the context, and between two context frames
        pool = positives + distractors
        rng.shuffle(pool)
        ctx = torch.stack([at(t) for t in context])
        cand = torch.stack([at(t) for t in pool])
        _, path = bound.solve(ctx, cand, gap, k)
        assert [pool[i] for i in path] == positives


def test_gap_position_counts_the_context_frames_before_the_marker(bound):
    for gap in (1, 2, 4):
        prompt = render_prompt(gap, 6 - gap, 2, 5, 1)
        assert bound.gap_position(prompt) == gap
