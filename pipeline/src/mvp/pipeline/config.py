"""What `mvp run` does: one validated config (flags, env and --config files all land here)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mvp.common.seeds import MAX_RUN_SEED
from mvp.common.synth_config import LEVELS, SynthConfig, level_config
from mvp.trainer.config import LocalTrainConfig

SAMPLES_PER_VIDEO = 4  # of the default run's synthesis


class RunConfig(BaseSettings):
    """Everything `mvp run` does, with defaults sized for ~10 minutes on a 2-core CPU. Its flags are
    generated from these fields (``--video-seconds`` sets ``video_seconds``, env
    ``MVP_RUN_VIDEO_SECONDS``); ``train``, ``synth`` and ``extra_train`` are set in a ``--config`` file."""

    model_config = SettingsConfigDict(env_prefix="MVP_RUN_", extra="forbid")

    input: str | None = Field(None, description="Folder or s3://bucket/prefix of your videos (default: procedural).")
    model: str = Field(
        "smol",
        description="Starting Video LLM: 'smol' (mvp-smol, aligned, the default), 'tiny' (random-init test "
        "fixture), a checkpoint folder or s3:// URI.",
    )
    videos: int = Field(24, ge=2, description="Procedural videos to generate (a quarter are held out).")
    video_seconds: float = Field(20.0, gt=0, description="Length of each procedural video.")
    level: int = Field(
        1,
        ge=1,
        le=3,
        description="MVP level of the training and held-out samples (mvp.common.synth_config.LEVELS: 1 = K=1 "
        "among 8 candidates, N=3; 2 = K=2 among 9, N=4; 3 = K=3 among 6, N=8); a --config file's `synth` "
        "section changes fields on top of it.",
    )
    eval_levels: list[int] = Field(
        default_factory=lambda: [2],
        description="Other MVP levels measured on the held-out videos before and after training (never trained "
        "on here), e.g. [2] or [2, 3]; [] measures only `level`.",
    )
    steps: int = Field(
        8,
        ge=0,
        description="GRPO steps of the local training run (a demonstration of the loop: a 4x8 GRPO step of "
        "mvp-smol takes ~8 s on 2 cores at N=6, benchmarks/grpo_step.py; the default run uses 2x4).",
    )
    seed: int = Field(
        0,
        ge=0,
        le=MAX_RUN_SEED,
        description="Seed of the corpus, the synthesis and training (0-69: higher ones would give corpus videos "
        "the seeds of the model's own stages, mvp.common.seeds).",
    )
    out: Path = Field(Path(".mvp"), description="Working folder: store data, logs, report.")
    bucket: str = Field("mvp", description="Bucket for corpus, samples and checkpoints.")
    synth_addr: str | None = Field(None, description="Use this synth-service instead of starting one.")
    reward_addr: str | None = Field(None, description="Use this reward-service instead of starting one.")
    keep_serving: bool = Field(False, description="Leave the inference server running at the end.")
    eval_limit: int = Field(24, ge=1, description="Held-out samples evaluated before and after training.")
    transfer_clips: int = Field(
        8,
        ge=0,
        description="Unseen procedural clips of the transfer probe (plus one clip per FFmpeg test source), "
        "run before and after training; 0 skips it.",
    )
    train: LocalTrainConfig = Field(
        default_factory=lambda: LocalTrainConfig(prompts_per_step=2, n_samples_per_prompt=4, save_steps=4),
        description="Local GRPO recipe (its steps and seed are the run's: set them once, here or as --steps/--seed); "
        "small groups keep the default run short.",
    )
    synth: SynthConfig = Field(
        default_factory=lambda: level_config(1, samples_per_video=SAMPLES_PER_VIDEO),
        description="Sample synthesis config: `level`'s, with a --config file's `synth` fields replacing its values.",
    )
    extra_train: list[dict[str, Any]] = Field(
        default_factory=list,
        description="More training sample sets from the same training videos, each given as SynthConfig fields "
        'that replace synth\'s (e.g. [{"num_masked": 1}] adds easier K=1 samples); GRPO draws its prompts from '
        "all training sets together. Held-out samples always follow synth.",
    )

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        """One value per setting: `level` gives synth's task (a `synth` section changes fields on top of
        it), and `steps`/`seed` are the training's and the synthesis' unless those sections set their
        own, which must then agree (a conflict names both instead of one silently winning)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key, sections in (("steps", ("train",)), ("seed", ("train", "synth"))):
            for section in sections:
                inner = data.get(section)
                if not isinstance(inner, dict) or key not in inner:
                    continue
                if key in data and data[key] != inner[key]:
                    raise ValueError(
                        f"{key} is set twice with different values: {key}={data[key]} and {section}.{key}="
                        f"{inner[key]}; set one of them"
                    )
                data[key] = inner[key]
        synth = data.get("synth")
        if synth is None or isinstance(synth, dict):
            level = int(data.get("level", cls.model_fields["level"].default))
            fields = {"samples_per_video": SAMPLES_PER_VIDEO, **(synth or {})}
            data["synth"] = level_config(level, **fields).model_dump() if level in LEVELS else fields
        return data

    @model_validator(mode="after")
    def _extra_train_configs(self) -> RunConfig:
        # the run's steps and seed reach the sections that use them (checked to agree above)
        self.train = self.train.model_copy(update={"steps": self.steps, "seed": self.seed})
        self.synth = self.synth.model_copy(update={"seed": self.seed})
        if any(level not in LEVELS for level in self.eval_levels):
            raise ValueError(f"eval_levels {self.eval_levels}: levels are {', '.join(map(str, LEVELS))}")
        for i in range(len(self.extra_train)):
            try:
                self.extra_synth(i)
            except ValueError as exc:
                raise ValueError(f"extra_train[{i}] is not a valid synth config: {exc}") from None
        return self

    def extra_synth(self, i: int) -> SynthConfig:
        """``synth`` with ``extra_train[i]``'s fields replaced (validated)."""
        return SynthConfig.model_validate({**self.synth.model_dump(), **self.extra_train[i]})


def run_id(config: RunConfig) -> str:
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:12]
