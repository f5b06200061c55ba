"""The seed spaces of procedural videos cannot overlap: corpora of every allowed run seed stay below
the model's own stages, which stay below the transfer probe; anything else is refused."""

from __future__ import annotations

import itertools

import pytest

from mvp.common import seeds

pytestmark = pytest.mark.unit


def test_corpus_spaces_of_all_run_seeds_stay_apart_from_each_other_and_the_model() -> None:
    full = seeds.HELD_OUT_OFFSET
    ranges = []
    for run_seed in range(seeds.MAX_RUN_SEED + 1):
        for split in seeds.SPLITS:
            first = seeds.corpus_seed(run_seed, split, full)
            ranges.append((first, first + full))
    ranges.sort()
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(ranges))
    assert ranges[-1][1] <= seeds.MODEL_STAGES < seeds.TRANSFER_PROBE
    from mvp.model.frames import SEED_OFFSET
    from mvp.trainer.transfer import PROBE_SEED_OFFSET

    assert (SEED_OFFSET, PROBE_SEED_OFFSET) == (seeds.MODEL_STAGES, seeds.TRANSFER_PROBE)


@pytest.mark.parametrize(
    ("run_seed", "split", "count", "needle"),
    [(90, "train", 10, "model's own stages"), (0, "heldout", 50_001, "overlap"), (0, "test", 1, "unknown split")],
)
def test_a_corpus_that_would_overlap_is_refused(run_seed: int, split: str, count: int, needle: str) -> None:
    with pytest.raises(seeds.SeedSpaceError, match=needle):
        seeds.corpus_seed(run_seed, split, count)


def test_mvp_run_refuses_a_seed_past_the_corpus_space() -> None:
    from mvp.pipeline.config import RunConfig

    with pytest.raises(ValueError, match="less than or equal to 69"):
        RunConfig(seed=90)
