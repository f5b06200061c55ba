"""The one validated synthesis config (mirrors ``mvp.v1.SynthesisConfig``)."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mvp.common.geometry import FRAME_LONG_SIDE
from mvp.v1 import sample_pb2


class SynthConfig(BaseModel):
    """All parameters of sample synthesis. Same video + config + seed = byte-identical samples."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fps: float = Field(1.0, gt=0, le=30, description="Decode rate; the paper samples key frames at 1 FPS.")
    num_frames: int = Field(
        8,
        ge=3,
        le=64,
        description="N kept frames per sample. 8 fits a small model's context on CPU; the paper uses more.",
    )
    num_masked: int = Field(3, ge=1, le=16, description="K masked (continuous) frames: the answer length.")
    num_distractors: int = Field(3, ge=0, le=32, description="l hard negatives: pool size is K + l.")
    kappa: float = Field(
        0.92,
        gt=-1,
        le=1,
        description="Keep a frame only if its similarity to the last kept frame is below kappa "
        "(meaning depends on the embedder; see docs/synth-service.md).",
    )
    image_size: int = Field(
        FRAME_LONG_SIDE,
        ge=32,
        le=2048,
        description="Longest side of stored frames, pixels (the default gives mvp-smol the patch grid it was "
        "aligned on: mvp.common.geometry).",
    )
    image_format: Literal["jpeg", "webp"] = Field("jpeg", description="Encoding of stored frames.")
    image_quality: int = Field(90, ge=1, le=100, description="Encoder quality of stored frames.")
    seed: int = Field(0, ge=0, description="Base seed; each sample derives its seed from it and the video hash.")
    embedder: str = Field(
        "thumb", description="Frame embedder: 'thumb' (16x16 luma, correlation), 'dhash' (64-bit hash), 'clip:PATH'."
    )
    samples_per_video: int = Field(2, ge=1, le=64, description="Samples drawn per video, from different starts.")
    allow_edge_mask: bool = Field(
        False, description="Allow the gap at the first/last kept frame (default: always context on both sides)."
    )
    neighbourhood_s: float = Field(
        8.0, gt=0, description="Distractors come from within this many seconds of the gap (widened if too few)."
    )
    distractor_sampling: Literal["nearest", "uniform"] = Field(
        "nearest",
        description="nearest: closest in time to the gap first (the hardest negatives); uniform: at random within "
        "neighbourhood_s of the gap (the paper's 'sampled from the temporal neighbourhood').",
    )
    max_distractor_similarity: float = Field(
        0.97, gt=-1, le=1, description="Reject distractors this similar to a positive or another distractor."
    )
    index_base: int = Field(1, ge=0, le=1, description="Number of the first candidate in the prompt.")
    max_pixels: int = Field(
        8192 * 8192, ge=1, description="Videos with more pixels per frame are skipped as too large to decode."
    )
    max_decoded_frames: int = Field(
        3600, ge=1, description="Stop decoding after this many sampled frames (1 hour at 1 FPS)."
    )

    @model_validator(mode="after")
    def _check(self) -> SynthConfig:
        if self.num_masked > self.num_frames - (0 if self.allow_edge_mask else 2):
            raise ValueError(
                f"num_masked={self.num_masked} leaves no context on both sides of the gap with "
                f"num_frames={self.num_frames} (set allow_edge_mask or raise num_frames)"
            )
        if not (self.embedder in ("thumb", "dhash") or self.embedder.startswith("clip:")):
            raise ValueError(f"unknown embedder {self.embedder!r} (thumb, dhash, clip:PATH)")
        return self

    def digest(self) -> str:
        """Stable hash of the config: outputs of different configs never mix."""
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:16]

    def to_proto(self) -> sample_pb2.SynthesisConfig:
        fields = {f.name for f in sample_pb2.SynthesisConfig.DESCRIPTOR.fields}
        return sample_pb2.SynthesisConfig(**{k: v for k, v in self.model_dump().items() if k in fields})

    @classmethod
    def from_proto(cls, message: sample_pb2.SynthesisConfig | None, base: SynthConfig | None = None) -> SynthConfig:
        """Proto fields that are unset take ``base``'s (or the default) value; a field set to 0, "" or
        false keeps that value (and fails validation where it is invalid), never the default."""
        values = (base or cls()).model_dump()
        if message is not None:
            values.update(MessageToDict(message, preserving_proto_field_name=True))
            for name in ("seed", "max_pixels"):  # 64-bit integers arrive as JSON strings
                if name in values:
                    values[name] = int(values[name])
        return cls.model_validate(values)


# The ladder of MVP tasks the learning proof climbs (`mvp run --level N`, benchmarks/learning_curve.py):
# distractors drawn uniformly from within 8 s of the gap, as the paper samples them. Chance of an
# exact answer: 1/8, 1/72, 1/120.
LEVELS: dict[int, dict] = {
    1: {"num_frames": 3, "num_masked": 1, "num_distractors": 7},
    2: {"num_frames": 4, "num_masked": 2, "num_distractors": 7},
    3: {"num_frames": 8, "num_masked": 3, "num_distractors": 3},
}
LEVEL_DISTRACTORS = {"distractor_sampling": "uniform", "neighbourhood_s": 8.0}


def level_config(level: int, **fields) -> SynthConfig:
    """The synthesis config of MVP level ``level`` (1-3), with ``fields`` replacing its values."""
    if level not in LEVELS:
        raise ValueError(f"unknown MVP level {level} (levels: {', '.join(map(str, LEVELS))})")
    return SynthConfig.model_validate({**LEVEL_DISTRACTORS, **LEVELS[level], **fields})
