"""What a run has done so far: its stages and the typed results they produced (the report is
written from it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mvp.common.settings import StoreSettings
from mvp.pipeline.artifacts import Checkpoint, Corpus, Evaluation, Gain, SampleSet, Served, Services
from mvp.pipeline.config import RunConfig


@dataclass
class StageRecord:
    name: str
    status: str = "pending"  # running | ok | skipped | failed
    seconds: float = 0.0
    detail: str = ""


@dataclass
class RunState:
    config: RunConfig
    stages: list[StageRecord] = field(default_factory=list)
    store: StoreSettings | None = None
    corpus: Corpus | None = None
    services: Services | None = None
    sample_sets: list[SampleSet] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    gains: list[Gain] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    transfer: dict[str, dict] = field(default_factory=dict)  # {"before"|"after": the probe's result}
    served: Served | None = None
    report: Path | None = None
    models_loaded: list[str] = field(default_factory=list)

    def sets(self, role: str) -> list[SampleSet]:
        return [s for s in self.sample_sets if s.role == role]
