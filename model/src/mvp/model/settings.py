"""Settings of mvp-smol's own training stages (distillation, alignment), apart from the code that
runs them: the CLI declares their flags without importing torch."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mvp.model.tasks import FACT_KINDS, MATCH_KINDS

# The language model's linear projections (one of each per decoder layer) that alignment can
# give LoRA deltas, and those the committed weights were trained with.
LORA_TARGET_CHOICES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_TARGETS = ("q_proj", "v_proj")


class DistillConfig(BaseSettings):
    """How the vision tower is distilled. The defaults built the committed weights."""

    model_config = SettingsConfigDict(env_prefix="MVP_DISTILL_", extra="ignore")

    videos: int = Field(300, ge=1, description="Training videos (procedural, never in a corpus).")
    seconds: float = Field(6.0, gt=0, description="Length of each video; frames are taken at 1 FPS.")
    augmented: int = Field(1, ge=0, description="Augmented copies of each frame (crop, mirror, channel order).")
    held_out_videos: int = Field(20, ge=1, description="Videos whose frames measure the student (never trained on).")
    epochs: int = Field(20, ge=1, description="Passes over the training frames.")
    batch_frames: int = Field(64, ge=1, description="Frames per optimiser step.")
    lr: float = Field(2e-3, gt=0, description="AdamW peak learning rate (warm-up, then cosine).")
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay.")
    seed: int = Field(0, ge=0, description="Seed of initialisation and data order.")
    threads: int = Field(2, ge=1, description="torch CPU threads (results are bit-identical only at equal threads).")


class AlignConfig(BaseSettings):
    """How mvp-smol is aligned. The defaults built the committed weights."""

    model_config = SettingsConfigDict(env_prefix="MVP_ALIGN_", extra="ignore")

    train_videos: int = Field(48, ge=2, description="Videos whose frames the matching samples are drawn from.")
    held_out_videos: int = Field(12, ge=2, description="Unseen videos of the held-out samples.")
    held_out_samples: int = Field(24, ge=1, description="Held-out samples per curriculum stage.")
    curriculum: str = Field(
        "1:2:other:700,2:3:other:300,2:3:same:400,3:3:same:400",
        description="Stages, easiest first, each K:l:KIND:samples (K references, l distractors, trained for that "
        "many samples). KIND: 'other'/'same' (an exact copy of each reference among frames of other videos / of "
        "the same video); 'near' (the candidate filmed one second before or after each reference, distractors "
        ">= 3 s from every reference); 'close' (the same, distractors >= 2 s); 'pick' (a 'close' sample whose "
        "question names one reference, every reference's neighbour among the candidates); 'mvp' (the MVP "
        "question itself on the model's own videos: K masked frames between one context frame on each side, l "
        "distractors within 8 s). Or where|motion:samples (scene facts: where a named object is, which way it "
        "moved).",
    )
    init: Path | None = Field(
        None, description="Continue from these alignment weights (merger + LoRA) instead of from the start."
    )
    batch: int = Field(8, ge=1, description="Samples per optimiser step.")
    lr_merger: float = Field(2e-3, gt=0, description="Peak learning rate of the vision merger (cosine decay).")
    lr_lora: float = Field(1e-3, gt=0, description="Peak learning rate of the LoRA deltas (cosine decay).")
    lora_rank: int = Field(16, ge=1, description="Rank of the LoRA deltas.")
    lora_targets: str = Field(
        ",".join(LORA_TARGETS),
        description="Language-model projections that get LoRA deltas, comma-separated, from "
        f"{','.join(LORA_TARGET_CHOICES)} (each in every layer).",
    )
    full_layers: str = Field(
        "",
        description="Decoder layers of the language model trained in full instead of through LoRA, as "
        "FIRST-LAST (0-based, e.g. 0-29 for all of mvp-smol's 30); their weights go into the weights file "
        "(about 7 MB per layer in fp16, so more than a few layers is not a file to commit). Empty: none.",
    )
    lr_full: float = Field(3e-5, gt=0, description="Peak learning rate of the layers trained in full (cosine decay).")
    seed: int = Field(0, ge=0, description="Seed of initialisation and samples.")
    threads: int = Field(2, ge=1, description="torch CPU threads.")
    eval_every: int = Field(200, ge=1, description="Training samples between held-out evaluations.")

    def stages(self) -> list[tuple[int, int, str, int]]:
        """(K, l, kind, samples) per stage; a scene-fact stage is (1, 0, kind, samples)."""
        out = []
        for part in self.curriculum.split(","):
            fields = part.split(":")
            try:
                if len(fields) == 2 and fields[0] in FACT_KINDS:
                    stage = (1, 0, fields[0], int(fields[1]))
                elif len(fields) == 4 and fields[2] in MATCH_KINDS:
                    stage = (int(fields[0]), int(fields[1]), fields[2], int(fields[3]))
                else:
                    raise ValueError(part)
            except ValueError as exc:
                raise ValueError(
                    f"curriculum stage {part!r} is neither K:l:other|same|near|close|pick:samples "
                    "nor where|motion:samples"
                ) from exc
            if stage[0] < 1 or stage[1] < 0 or stage[3] < 1:
                raise ValueError(f"curriculum stage {part!r}: need K >= 1, l >= 0, samples >= 1")
            out.append(stage)
        return out

    @field_validator("lora_targets")
    @classmethod
    def _known_targets(cls, value: str) -> str:
        names = [t.strip() for t in value.split(",") if t.strip()]
        if not names or any(t not in LORA_TARGET_CHOICES for t in names):
            raise ValueError(f"lora_targets {value!r}: choose from {','.join(LORA_TARGET_CHOICES)}")
        return ",".join(names)

    @field_validator("full_layers")
    @classmethod
    def _layer_range(cls, value: str) -> str:
        value = value.strip()
        if value:
            first, sep, last = value.partition("-")
            if not (sep and first.isdigit() and last.isdigit() and int(first) <= int(last)):
                raise ValueError(f"full_layers {value!r}: expected FIRST-LAST, e.g. 24-29")
        return value

    def targets(self) -> tuple[str, ...]:
        return tuple(self.lora_targets.split(","))

    def full_layer_range(self) -> range:
        """The decoder layers trained in full (empty when ``full_layers`` is)."""
        if not self.full_layers:
            return range(0)
        first, last = self.full_layers.split("-")
        return range(int(first), int(last) + 1)
