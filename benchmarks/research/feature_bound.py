"""How much of MVP the frame features alone solve: the bound a Video LLM could reach if it only
compared what its vision tower gives it, measured on held-out samples.

For each sample, every frame (context and candidates) is turned into a feature vector by one of
three encoders: raw pixels (24x16 RGB, the reference), EfficientNet-Lite0 (the pretrained teacher,
a 2x3 grid of its last feature map) and mvp-smol's own vision tower + merger (the 6 visual tokens
per frame that its language model reads). Two training-free solvers answer from cosine similarity:

- ``nearest``: the K candidates most similar to either frame around the gap, ordered by how much
  more they resemble the frame before the gap than the one after;
- ``path``: the ordered K candidates that make the most similar chain from the frame before the gap
  to the frame after it (every ordered K-subset tried).

An answer is exact when it names the right candidates in the right order (chance 1/(C)_K).

    python benchmarks/research/feature_bound.py --samples s3://mvp/samples/<digest>/heldout/samples.jsonl [--limit 64]

(with MVP_S3_ENDPOINT pointing at the store that holds them). Last line: JSON with exact and
selection per encoder and solver, chance, and the ratio of mvp-smol's path-exact to the pixels'.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def gap_position(prompt: str) -> int:
    """Context frames before the gap marker."""
    return prompt.split("[GAP")[0].count("<image>")


def solve(ctx: torch.Tensor, cand: torch.Tensor, gap: int, k: int) -> tuple[list[int], list[int]]:
    """(nearest, path) answers as 0-based candidate indices, from unit-norm features."""
    left, right = ctx[gap - 1], ctx[gap]
    sl, sr = cand @ left, cand @ right
    top = torch.topk(torch.maximum(sl, sr), k).indices.tolist()
    nearest = sorted(top, key=lambda i: -(sl[i] - sr[i]).item())
    sim = cand @ cand.T
    best, best_score = [], -math.inf
    for perm in itertools.permutations(range(len(cand)), k):
        score = sl[perm[0]].item() + sr[perm[-1]].item()
        score += sum(sim[a, b].item() for a, b in itertools.pairwise(perm))
        if score > best_score:
            best, best_score = list(perm), score
    return nearest, best


def encoders(model: str):
    from PIL import Image

    from mvp.model.policy import Policy
    from mvp.model.resolve import resolve_model
    from mvp.model.teacher import Teacher

    teacher = Teacher()
    policy = Policy(resolve_model(model, None, Path.home() / ".cache" / "mvp"))

    def pixels(images: list[Image.Image]) -> torch.Tensor:
        return torch.tensor(np.stack([np.asarray(i.resize((24, 16)), np.float32).ravel() for i in images]))

    def efficientnet(images: list[Image.Image]) -> torch.Tensor:
        return teacher.features([np.asarray(i.resize((168, 112))) for i in images], (2, 3)).flatten(1)

    @torch.no_grad()
    def vision_tower(images: list[Image.Image]) -> torch.Tensor:
        v = policy.image_processor(images=images, return_tensors="pt")
        out = policy.model.model.visual(v["pixel_values"], grid_thw=v["image_grid_thw"])
        return getattr(out, "pooler_output", out).reshape(len(images), -1)

    return {"pixels": pixels, "efficientnet": efficientnet, "mvp_smol_vision": vision_tower}


def main() -> int:
    from mvp.common.settings import StoreSettings
    from mvp.common.storage import Storage
    from mvp.trainer.data import load_examples

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", required=True, help="samples.jsonl (s3:// or a folder path)")
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--model", default="smol", help="whose vision tower: 'smol' or a checkpoint folder")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    examples = load_examples(Storage(StoreSettings()), args.samples, args.limit)
    result: dict = {"bench": "feature_bound", "samples": len(examples)}
    for name, encode in encoders(args.model).items():
        hits = {"nearest": [0.0, 0.0], "path": [0.0, 0.0]}
        for ex in examples:
            n_ctx = len(ex.images) - ex.num_candidates
            feats = torch.nn.functional.normalize(encode(ex.images), dim=1)
            answer = [a - ex.index_base for a in ex.answer]
            answers = solve(feats[:n_ctx], feats[n_ctx:], gap_position(ex.prompt), ex.k)
            for solver, pred in zip(hits, answers, strict=True):
                hits[solver][0] += pred == answer
                hits[solver][1] += len(set(pred) & set(answer)) / ex.k
        for solver, (exact, selection) in hits.items():
            result[f"{name}_{solver}_exact"] = round(exact / len(examples), 3)
            result[f"{name}_{solver}_selection"] = round(selection / len(examples), 3)
    result["chance_exact"] = round(float(np.mean([1 / math.perm(e.num_candidates, e.k) for e in examples])), 4)
    ref = result["pixels_path_exact"]
    result["ratio_vision_to_pixels_path_exact"] = round(result["mvp_smol_vision_path_exact"] / ref, 2) if ref else None
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
