"""Frames for the model's own training stages (distillation, alignment), rendered by the
procedural generator from seeds disjoint from the corpora `mvp data` writes."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from mvp.common.procedural import SceneObject, VideoSpec, render_frames, scene_objects
from mvp.common.seeds import MODEL_STAGES

# `mvp data` / `mvp run` corpora use seeds from 0; the model's stages stay far away (mvp.common.seeds).
SEED_OFFSET = MODEL_STAGES


def video_frames(index: int, seconds: float = 20.0, every: int = 25) -> list[np.ndarray]:
    """Every ``every``-th frame (25 fps: 1 FPS by default) of procedural video ``index``."""
    spec = VideoSpec(seed=SEED_OFFSET + index, seconds=seconds)
    return [f for i, f in enumerate(render_frames(spec)) if i % every == 0]


def video_objects(index: int, count: int, seconds: float = 20.0) -> list[list[SceneObject]]:
    """The generator's objects in the first ``count`` frames ``video_frames(index)`` returns (1 FPS)."""
    return scene_objects(VideoSpec(seed=SEED_OFFSET + index, seconds=seconds), [float(t) for t in range(count)])


def pixel_rows(processor, frames: list[np.ndarray]) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Frames of one size through the model's image processor: ``pixel_values`` as (frames,
    patches, dim), and the (t, h, w) patch grid they share."""
    out = processor(images=[Image.fromarray(f) for f in frames], return_tensors="pt")
    thw = out["image_grid_thw"]
    if not bool((thw == thw[0]).all()):
        raise ValueError(f"frames of different sizes give different patch grids: {thw.unique(dim=0).tolist()}")
    return out["pixel_values"].view(len(frames), int(thw[0].prod()), -1), tuple(int(x) for x in thw[0])
