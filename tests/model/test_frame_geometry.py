"""One frame geometry: the frames an MVP sample stores (synth's default config, a real corpus job on
procedural videos), the frames alignment and distillation render, and the transfer probe's FFmpeg
clips all reach mvp-smol's image processor on the patch grid declared in mvp.common.geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mvp.common import geometry
from mvp.model.frames import pixel_rows, video_frames
from mvp.model.smol import build_image_processor

pytestmark = pytest.mark.unit


def _grid(processor, image: Image.Image) -> tuple[int, int]:
    thw = processor(images=[image], return_tensors="pt")["image_grid_thw"][0]
    return int(thw[1]), int(thw[2])


def test_mvp_sample_frames_and_alignment_frames_share_the_declared_grid(tmp_path: Path) -> None:
    from mvp.common.procedural import write_corpus
    from mvp.common.settings import StoreSettings
    from mvp.common.storage import Storage
    from mvp.common.synth_config import SynthConfig
    from mvp.synth.corpus import run_corpus
    from mvp.trainer.data import load_examples

    write_corpus(tmp_path / "videos", 1, seed=321, seconds=12)
    config = SynthConfig(num_frames=3, num_masked=1, num_distractors=3, samples_per_video=1)  # default image_size
    run_corpus(StoreSettings(), str(tmp_path / "videos"), str(tmp_path / "samples"), config, workers=1)
    (example,) = load_examples(Storage(), str(tmp_path / "samples" / "samples.jsonl"))

    processor = build_image_processor()
    mvp_grids = {_grid(processor, image) for image in example.images}
    _, align_grid = pixel_rows(processor, video_frames(0, seconds=2))
    assert mvp_grids == {geometry.PATCH_GRID} == {align_grid[1:]}
    assert geometry.TOKENS_PER_FRAME == 6
    # a frame already at the model's size keeps it (the vLLM path resizes again)
    assert _grid(processor, Image.new("RGB", geometry.MODEL_FRAME_PX)) == geometry.PATCH_GRID


@pytest.mark.parametrize("size", [(320, 240), (256, 144), geometry.FRAME_SIZE])
def test_stored_frame_sizes_of_4_3_and_16_9_videos_give_the_grid(size: tuple[int, int]) -> None:
    frame = Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8))
    assert _grid(build_image_processor(), frame) == geometry.PATCH_GRID


def test_the_old_default_frame_size_lands_elsewhere() -> None:
    """224x126 (synth's former default) becomes a 4x8 grid: the geometry the model was never aligned on,
    the reason the default is FRAME_LONG_SIDE."""
    assert _grid(build_image_processor(), Image.new("RGB", (224, 126))) == (4, 8)
