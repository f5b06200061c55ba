"""What a run has done so far: its stages and what they produced (the report is written from it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mvp.common.settings import StoreSettings
from mvp.pipeline.config import RunConfig


@dataclass
class StageRecord:
    name: str
    status: str = "pending"  # ok | skipped | failed
    seconds: float = 0.0
    detail: str = ""


@dataclass
class RunState:
    config: RunConfig
    stages: list[StageRecord] = field(default_factory=list)
    store: StoreSettings | None = None
    synth_addr: str = ""
    reward_addr: str = ""
    splits: dict[str, dict] = field(default_factory=dict)
    evals: dict[str, dict] = field(default_factory=dict)
    gains: dict[str, dict] = field(default_factory=dict)  # {task: {exact|reward: paired after - before}}
    transfer: dict[str, dict] = field(default_factory=dict)
    served: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
