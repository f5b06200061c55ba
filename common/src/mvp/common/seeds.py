"""Every seed space of procedural videos, declared once and kept apart, so no corpus video is ever a
video the model's own stages trained on or one the transfer probe measures.

| space | seeds |
|---|---|
| corpora of run seed s (`mvp run`, the proof) | train s x 100,000 + i; held-out s x 100,000 + 50,000 + i |
| the model's distillation and alignment | 7,000,000 + i |
| the transfer probe | 9,000,000 + i |
| LMMs-Eval's MVP cloze task (evaluation/run_lmms_eval.py) | 9,500,000 + i |

Corpora of run seeds 0-69 stay below the model's space; ``corpus_seed`` refuses what would not.
"""

from __future__ import annotations

RUN_STRIDE = 100_000  # corpus seeds per run seed
HELD_OUT_OFFSET = 50_000  # held-out videos start here within a run's stride
MODEL_STAGES = 7_000_000  # distillation and alignment videos
TRANSFER_PROBE = 9_000_000  # the transfer probe's clips
LMMS_EVAL_CLOZE = 9_500_000  # the videos of LMMs-Eval's MVP cloze task
MAX_RUN_SEED = MODEL_STAGES // RUN_STRIDE - 1
SPLITS = ("train", "heldout")


class SeedSpaceError(ValueError):
    """A corpus that would reach into another seed space."""


def corpus_seed(run_seed: int, split: str, count: int) -> int:
    """The first video seed of ``count`` videos of ``split`` for run seed ``run_seed``."""
    if split not in SPLITS:
        raise SeedSpaceError(f"unknown split {split!r} ({', '.join(SPLITS)})")
    if not 0 <= run_seed <= MAX_RUN_SEED:
        raise SeedSpaceError(
            f"run seed {run_seed} would give corpus videos the seeds of the model's own stages "
            f"({MODEL_STAGES:,}+); use a seed from 0 to {MAX_RUN_SEED}"
        )
    if count > HELD_OUT_OFFSET:
        raise SeedSpaceError(f"{count} videos of one split overlap the other split (at most {HELD_OUT_OFFSET:,})")
    return run_seed * RUN_STRIDE + (HELD_OUT_OFFSET if split == "heldout" else 0)
