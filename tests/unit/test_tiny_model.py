"""The tiny Qwen2.5-VL honours its spec's vision patch size in both the model and the processor."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from mvp.model.policy import Policy
from mvp.model.tiny import TINY, ensure_tiny_model


def test_patch_size_28_gives_one_visual_token_per_frame(tmp_path):
    spec = {**TINY, "patch_size": 28, "image_pixels": 56 * 56}
    policy = Policy(ensure_tiny_model(tmp_path / "m", spec=spec))
    assert policy.model.config.vision_config.patch_size == 28
    frames = [Image.fromarray(np.full((180, 320, 3), v, np.uint8)) for v in (10, 200)]
    enc = policy.encode("Frame 1: <image>\nCandidate 1: <image>", frames)
    assert int((enc.input_ids == policy.image_token_id).sum()) == 2  # one merged token per frame
    assert enc.image_grid_thw.tolist() == [[1, 2, 2], [1, 2, 2]]
    completion = policy.tokenizer("<answer>1</answer>", add_special_tokens=False, return_tensors="pt")["input_ids"]
    logp, _ = policy.token_logprobs(enc, completion)
    assert logp.shape == completion.shape and torch.isfinite(logp).all()
