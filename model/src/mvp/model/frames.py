"""Frames for the model's own training stages (distillation, alignment), rendered by the
procedural generator from seeds disjoint from the corpora `mvp data` writes."""

from __future__ import annotations

import numpy as np

from mvp.synth.procedural import VideoSpec, render_frames

# `mvp data` / `mvp run` corpora use seeds from 0; the model's stages stay far away from them.
SEED_OFFSET = 7_000_000


def video_frames(index: int, seconds: float = 20.0, every: int = 25) -> list[np.ndarray]:
    """Every ``every``-th frame (25 fps: 1 FPS by default) of procedural video ``index``."""
    spec = VideoSpec(seed=SEED_OFFSET + index, seconds=seconds)
    return [f for i, f in enumerate(render_frames(spec)) if i % every == 0]
