"""The learnability probe's samples are what it claims: MVP rows planned by synth-service's
algorithm, and control rows whose answers point at exact copies of the frames to find."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from tests.benchmarks.scripts import load_benchmark

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def probe():
    return load_benchmark("research/learnability_probe")


@pytest.fixture(scope="module")
def videos(probe):
    return probe.render_videos([3, 4, 5], seconds=20)


def test_match_rows_point_at_copies_of_the_targets(probe, videos):
    rows = probe.match_rows(videos, k=3, l_=3, count=40, rng=random.Random(0))
    assert len(rows) == 40
    for row in rows:
        targets, candidates = row["frames"][:3], row["frames"][3:]
        assert len(candidates) == 6 and len(set(candidates)) == 6
        assert sorted(row["answer"]) == sorted(set(row["answer"])) and all(1 <= a <= 6 for a in row["answer"])
        for target, answer in zip(targets, row["answer"], strict=True):
            seed, index = candidates[answer - 1]
            assert (seed, index) == target
            assert np.array_equal(videos[seed][index], videos[target[0]][target[1]])
        assert row["prompt"].count("<image>") == 9


def test_mvp_rows_follow_the_synthesis_plan(probe, videos):
    rows = probe.mvp_rows(videos, k=3, l_=3, n=7, per_video=4)
    assert rows
    for row in rows:
        assert len(row["frames"]) == (7 - 3) + (3 + 3)  # context + pool
        assert row["prompt"].count("<image>") == len(row["frames"])
        assert len(set(row["answer"])) == 3 and all(1 <= a <= 6 for a in row["answer"])
        context, pool = row["frames"][:4], row["frames"][4:]
        picked = [pool[a - 1][1] for a in row["answer"]]
        assert picked == sorted(picked)  # the answer lists the masked frames in temporal order
        assert not set(picked) & {f for _, f in context}


def test_chance_is_one_over_ordered_picks(probe):
    assert probe.chance_exact(3, 6) == pytest.approx(1 / 120)
    assert probe.chance_exact(2, 4) == pytest.approx(1 / math.perm(4, 2))


def test_spec_overrides_merge_nested_keys(probe):
    from mvp.model.tiny import TINY

    spec = probe.merge_spec(TINY, {"patch_size": 28, "text": {"num_hidden_layers": 4}})
    assert spec["patch_size"] == 28 and spec["text"]["num_hidden_layers"] == 4
    assert spec["text"]["hidden_size"] == TINY["text"]["hidden_size"] and "patch_size" not in TINY


def test_curriculum_parses_stages_and_rejects_bad_ones(probe):
    assert probe.parse_curriculum("") == []
    assert probe.parse_curriculum("1:1:2500,1:2:1000") == [(1, 1, 2500), (1, 2, 1000)]
    for bad in ["1:1", "a:1:5", "0:1:5", "1:-1:5", "1:1:0"]:
        with pytest.raises(SystemExit, match="--curriculum"):
            probe.parse_curriculum(bad)
