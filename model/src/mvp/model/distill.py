"""Distillation of mvp-smol's vision tower from EfficientNet-Lite0.

The student is Qwen2.5-VL's own ViT (``smol.VISION``) so every serving stack that knows
Qwen2.5-VL runs it. Each merged visual token learns, through a linear head that is dropped
afterwards, to reproduce the teacher's features pooled over the pixels that token covers
(standardised per dimension). Frames come from procedural videos disjoint from any corpus.
The result is committed (``weights/vision-distilled.safetensors``, fp16); the same seed and
settings on the same torch build rebuild it bit for bit.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image

from mvp.model import smol
from mvp.model.frames import pixel_rows, video_frames
from mvp.model.settings import DistillConfig
from mvp.model.teacher import FEATURE_DIM, Teacher


def _augment(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop (60-100% of each side, resized back), mirror and colour-channel order: the
    same picture statistics, more distinct pictures per rendered video."""
    h, w, _ = frame.shape
    ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = frame[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = out[..., rng.permutation(3)]
    return np.asarray(Image.fromarray(np.ascontiguousarray(out)).resize((w, h), Image.BILINEAR))


def _frames(first: int, count: int, seconds: float, augmented: int, seed: int) -> list[np.ndarray]:
    """Frames at 1 FPS of ``count`` videos, each followed by ``augmented`` augmented copies."""
    rng = np.random.default_rng(seed)
    out = []
    for v in range(first, first + count):
        for frame in video_frames(v, seconds=seconds):
            out.append(frame)
            out += [_augment(frame, rng) for _ in range(augmented)]
    return out


def _dataset(frames: list[np.ndarray], teacher: Teacher, processor, log) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """pixel_values (frames, patches, dim), teacher targets (frames, tokens, 1280), grid."""
    pixels, targets, grid = [], [], None
    for start in range(0, len(frames), 32):
        chunk = frames[start : start + 32]
        rows, grid = pixel_rows(processor, chunk)
        pixels.append(rows)
        targets.append(teacher.features(chunk, (grid[1] // 2, grid[2] // 2)))
        log(f"teacher features {start + len(chunk)}/{len(frames)}")
    return torch.cat(pixels), torch.cat(targets), grid


def _student_tokens(visual, pixels: torch.Tensor, grid: tuple) -> torch.Tensor:
    n = pixels.shape[0]
    thw = torch.tensor([grid] * n)
    out = visual(pixels.reshape(-1, pixels.shape[-1]), grid_thw=thw).pooler_output
    return out.view(n, -1, out.shape[-1])


def distill(config: DistillConfig, out: Path = smol.VISION_FILE, log=print) -> dict:
    from safetensors.torch import save_file
    from transformers import Qwen2_5_VLConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    t0 = time.perf_counter()
    processor = smol.build_image_processor()
    teacher = Teacher()
    train_px, train_y, grid = _dataset(
        _frames(0, config.videos, config.seconds, config.augmented, config.seed), teacher, processor, log
    )
    held_px, held_y, _ = _dataset(
        _frames(100_000, config.held_out_videos, config.seconds, 0, config.seed), teacher, processor, log
    )
    teacher_s = time.perf_counter() - t0
    # Centred and scaled by one number: per-dimension standardising would weigh the many
    # near-constant (noise) dimensions as much as the ones that tell frames apart.
    mean = train_y.mean((0, 1))
    scale = (train_y - mean).pow(2).sum(-1).mean().sqrt() / FEATURE_DIM**0.5
    train_y, held_y = (train_y - mean) / scale, (held_y - mean) / scale

    vcfg = Qwen2_5_VLConfig(vision_config={**smol.VISION, "out_hidden_size": smol.TEXT["hidden_size"]}).vision_config
    torch.manual_seed(config.seed)
    visual = Qwen2_5_VisionTransformerPretrainedModel._from_config(vcfg)
    head = torch.nn.Linear(smol.TEXT["hidden_size"], FEATURE_DIM)
    params = list(visual.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    n = train_px.shape[0]
    steps = config.epochs * math.ceil(n / config.batch_frames)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    gen = torch.Generator().manual_seed(config.seed)
    curve = []
    step = 0
    for epoch in range(config.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, config.batch_frames):
            idx = order[start : start + config.batch_frames]
            pred = head(_student_tokens(visual, train_px[idx], grid))
            target = train_y[idx]
            loss = F.mse_loss(pred, target) + (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
        metrics = evaluate(visual, head, held_px, held_y, grid)
        curve.append(
            {
                "epoch": epoch + 1,
                "train_loss": round(loss.item(), 4),
                **metrics,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        log(json.dumps(curve[-1]))
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in visual.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata={"config": config.model_dump_json(), "grid": json.dumps(grid)})
    summary = {
        "frames": n,
        "held_out_frames": int(held_px.shape[0]),
        "teacher_seconds": round(teacher_s, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "steps": step,
        "final": curve[-1],
        "curve": curve,
        "weights": str(out),
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


@torch.no_grad()
def evaluate(visual, head, pixels: torch.Tensor, target: torch.Tensor, grid: tuple) -> dict:
    """How well the student keeps the teacher's picture of the held-out frames: cosine per token;
    ``geometry``, the correlation of the two frame-by-frame similarity matrices (what matching
    and ordering frames rely on); ``retrieval``, whether each frame's nearest teacher frame is its own."""
    pred = torch.cat([head(_student_tokens(visual, pixels[i : i + 64], grid)) for i in range(0, len(pixels), 64)])
    cos = F.cosine_similarity(pred, target, dim=-1).mean()
    p, t = F.normalize(pred.flatten(1), dim=1), F.normalize(target.flatten(1), dim=1)
    retrieval = ((p @ t.T).argmax(1) == torch.arange(len(p))).float().mean()
    off = ~torch.eye(len(p), dtype=torch.bool)
    geometry = torch.corrcoef(torch.stack([(p @ p.T)[off], (t @ t.T)[off]]))[0, 1]
    return {
        "held_cosine": round(float(cos), 4),
        "held_geometry": round(float(geometry), 4),
        "held_retrieval": round(float(retrieval), 4),
    }
