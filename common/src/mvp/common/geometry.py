"""The frame geometry the Video LLM reads, declared once for everything that makes frames for it.

mvp-smol's image processor (Qwen2-VL's ``smart_resize``) scales a frame into [MIN_PIXELS,
MAX_PIXELS] on a 28-px patch grid. A 320x180 (16:9) or 320x240 (4:3) frame becomes 168x112 px: a
4x6 patch grid, 2x3 = 6 visual tokens after the 2x2 merge; that is the geometry its vision tower
was distilled and aligned on. Other stored sizes land on other grids (224x126 -> 224x112 px, 4x8
patches, 8 tokens), which the model has never read. So frames are stored and rendered with their
longest side at ``FRAME_LONG_SIDE``: synth's default ``image_size``, the procedural generator,
alignment, distillation, the transfer probe and serving all take it from here, and a test checks
that an MVP sample's frame and an alignment frame give the model the same grid.

Pure constants (no torch, no PIL): synth imports them without any model code.
"""

from __future__ import annotations

PATCH_SIZE = 28  # pixels per side of one patch the vision tower embeds
MERGE_SIZE = 2  # patches merged per side into one visual token (2x2 -> 1)
MODEL_FRAME_PX = (168, 112)  # (width, height) a 16:9 or 4:3 frame is resized to: 4x6 patches
MIN_PIXELS = MODEL_FRAME_PX[0] * MODEL_FRAME_PX[1]
# The range holds 168x112 itself, so resizing is idempotent (the vLLM path relies on that).
MAX_PIXELS = 112 * 224
FRAME_LONG_SIDE = 320  # longest side of stored and rendered frames
FRAME_SIZE = (FRAME_LONG_SIDE, 180)  # (width, height) of a procedural frame (16:9)
PATCH_GRID = (MODEL_FRAME_PX[1] // PATCH_SIZE, MODEL_FRAME_PX[0] // PATCH_SIZE)  # (rows, columns)
TOKENS_PER_FRAME = (PATCH_GRID[0] // MERGE_SIZE) * (PATCH_GRID[1] // MERGE_SIZE)
