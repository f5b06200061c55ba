"""What the stages of `mvp run` produce, as typed values: each stage takes some of these and returns
one; the runner wires them, records them in ``RunState`` and the report reads only them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mvp.common.synth_config import SynthConfig

Role = Literal["train", "heldout"]


@dataclass(frozen=True)
class Corpus:
    """The videos: one input (folder or s3:// prefix) per role, and how many the run generated."""

    inputs: dict[str, str]  # "train", and "heldout" for the procedural corpus
    videos: dict[str, int] = field(default_factory=dict)
    uploaded: int = 0

    @property
    def own(self) -> bool:
        """The user's corpus (``--input``), not the procedural one."""
        return not self.videos


@dataclass(frozen=True)
class Services:
    synth_addr: str
    reward_addr: str


@dataclass(frozen=True)
class SampleSet:
    """One synthesis job's output: ``name`` is ``train``, ``train-1``... (extra training sets) or
    ``heldout``, ``heldout-L2``... (the held-out videos at another level)."""

    name: str
    role: Role
    config: SynthConfig
    input: str
    output: str
    samples: int
    job_id: str = ""
    videos_ok: int = 0
    videos_skipped: int = 0
    videos_failed: int = 0
    level: int | None = None  # None: an extra training set's own config, not a level

    @property
    def uri(self) -> str:
        return self.output + "/samples.jsonl"

    @property
    def task(self) -> str:
        c = self.config
        return f"N={c.num_frames}, K={c.num_masked}, l={c.num_distractors}"

    @property
    def chance_exact(self) -> float:
        """Probability that a uniformly random well-formed answer is the exact sequence."""
        k = self.config.num_masked
        return 1.0 / math.perm(k + self.config.num_distractors, k)

    def as_json(self) -> dict:
        return {
            "input": self.input,
            "output": self.output,
            "samples": self.samples,
            "job_id": self.job_id,
            "ok": self.videos_ok,
            "skipped": self.videos_skipped,
            "failed": self.videos_failed,
            "task": self.task,
            "level": self.level,
            "chance_exact": self.chance_exact,
        }


@dataclass(frozen=True)
class Checkpoint:
    """The trained model: its URI in the store, its step and the training run's facts."""

    uri: str
    step: int
    curves: str
    facts: dict


@dataclass(frozen=True)
class Evaluation:
    """One checkpoint (``before``/``after``) on one held-out task (``level N``)."""

    checkpoint: Literal["before", "after"]
    task: str
    name: str  # "before"/"after" on the run's own level, "after (level 2)" on another
    metrics: dict  # mvp.trainer.evaluate.evaluate's result (means, intervals, diagnostics)
    rows: list[dict]  # one per sample
    predictions: Path


@dataclass(frozen=True)
class Gain:
    """Paired after - before on one task's held-out samples (``mvp.trainer.stats.paired_difference``)."""

    task: str
    exact: dict
    reward: dict


@dataclass(frozen=True)
class Served:
    """One held-out sample answered by `mvp serve` through the OpenAI API and scored."""

    sample_id: str
    answer: str
    reward: float
    ground_truth: list[int]
    url: str
