"""What every stage of `mvp run` may use besides its typed inputs: the config, the working folder,
the child-process supervisor and the models the run holds in memory."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from mvp.pipeline.config import RunConfig
from mvp.pipeline.supervisor import Supervisor

if TYPE_CHECKING:
    from mvp.model.policy import Policy


class Models:
    """The models of one run, each read once: the base (baseline evaluation, the transfer probe's
    "before", and a copy of it is what training trains) and the trained one, kept from the training
    stage for the final evaluation and the probe's "after" instead of being downloaded again from its
    checkpoint. ``loads`` names every model read from disk or the store, in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loads: list[str] = []
        self.trained: Policy | None = None
        self._base: Policy | None = None
        self._work = tempfile.TemporaryDirectory(prefix="mvp-run-models-")

    def base(self, store: StoreSettings) -> Policy:
        if self._base is None:
            from mvp.trainer.runner import load_policy

            self._base = load_policy(self.name, Storage(store), Path(self._work.name))
            self.loads.append(self.name)
        return self._base

    def close(self) -> None:
        self._base = self.trained = None
        self._work.cleanup()


@dataclass
class Context:
    config: RunConfig
    out: Path
    sup: Supervisor
    models: Models = field(init=False)

    def __post_init__(self) -> None:
        self.models = Models(self.config.model)

    @property
    def served_name(self) -> str:
        return "mvp-tiny" if self.config.model == "tiny" else "mvp-smol"
