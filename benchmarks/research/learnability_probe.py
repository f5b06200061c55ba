r"""Can a model learn MVP at all? A supervised probe to run before spending GRPO time.

Trains the model on the *correct answers* (cross-entropy on the answer tokens) of MVP samples from
procedural videos and reports held-out exact-sequence accuracy against chance. GRPO gets far less
signal per sample than this, so a model/budget that does not beat chance here will not learn the
task with RL either. ``--task match`` is the control: the same prompt shape, but the K frames to
find are shown and the candidates hold exact copies of them (no temporal inference, only "find the
same picture and name its number"), which isolates in-context lookup from temporal reasoning.

Frames come straight from the procedural renderer at 1 FPS (no mp4 round trip: this probes the
model, not the pipeline) and are planned into samples by synth-service's own algorithm
(``plan_samples``, ``render_prompt``); the model is the project's tiny Qwen2.5-VL built from the
spec (``--spec`` overrides TINY's keys), encoded by the trainer's ``Policy``.

    python benchmarks/research/learnability_probe.py [--task mvp|match] [--seconds 600] \
        [--spec '{"patch_size": 28, "image_pixels": 3136}'] [--curriculum 1:1:2500,1:2:1000]

``--curriculum`` trains on easier (K, l) first, a fixed number of steps each, then on -k/-l for
the rest of the budget; held-out samples are always -k/-l.

The last line is JSON: held-out exact before/after, chance, ratio to chance, steps, samples seen.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def merge_spec(base: dict, override: dict) -> dict:
    out = {**base}
    for key, value in override.items():
        out[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def render_videos(seeds: list[int], seconds: float) -> dict[int, list]:
    from mvp.common.procedural import VideoSpec, render_frames

    return {s: list(render_frames(VideoSpec(seed=s, seconds=seconds, fps=1))) for s in seeds}


def mvp_rows(videos: dict[int, list], k: int, l_: int, n: int, per_video: int) -> list[dict]:
    """Samples planned by synth-service's algorithm: frames as (seed, index), answer, prompt."""
    from mvp.common.sample import render_prompt
    from mvp.common.synth_config import SynthConfig
    from mvp.common.video import VideoError
    from mvp.synth.embed import thumb
    from mvp.synth.pipeline import plan_samples

    config = SynthConfig(num_frames=n, num_masked=k, num_distractors=l_, samples_per_video=per_video)
    rows = []
    for seed, frames in videos.items():
        try:
            plans = plan_samples(thumb(frames), [float(i) for i in range(len(frames))], config, f"probe-{seed}")
        except VideoError:
            continue
        for p in plans:
            prompt = render_prompt(p.gap_position, len(p.context) - p.gap_position, k, len(p.candidates), 1)
            rows.append({"frames": [(seed, f) for f in p.context + p.candidates], "answer": p.answer, "prompt": prompt})
    return rows


def match_prompt(k: int, pool: int) -> str:
    lines = ["Find these frames among the candidates."]
    lines += [f"Frame {i + 1}: <image>" for i in range(k)]
    lines += ["Candidates:"] + [f"Candidate {i + 1}: <image>" for i in range(pool)]
    placeholders = ", ".join(f"c{j + 1}" for j in range(k))
    lines.append(
        f"Which candidates show frames 1 to {k}, in that order? "
        f"Give the candidate numbers as <answer>{placeholders}</answer>."
    )
    return "\n".join(lines)


def match_rows(videos: dict[int, list], k: int, l_: int, count: int, rng: random.Random) -> list[dict]:
    """The control task: K frames of a video to find among K copies + l other frames of it."""
    seeds, prompt, rows = sorted(videos), match_prompt(k, k + l_), []
    for _ in range(count):
        seed = rng.choice(seeds)
        picked = rng.sample(range(len(videos[seed])), k + l_)
        targets, candidates = picked[:k], picked[:]
        rng.shuffle(candidates)
        answer = [candidates.index(t) + 1 for t in targets]
        rows.append({"frames": [(seed, f) for f in targets + candidates], "answer": answer, "prompt": prompt})
    return rows


def parse_curriculum(text: str) -> list[tuple[int, int, int]]:
    """'K:l:steps,...' -> [(K, l, steps), ...]; empty text: no curriculum."""
    stages = []
    for item in filter(None, text.split(",")):
        try:
            k, l_, steps = (int(x) for x in item.split(":"))
        except ValueError:
            raise SystemExit(f"--curriculum: {item!r} is not K:l:steps") from None
        if k < 1 or l_ < 0 or steps < 1:
            raise SystemExit(f"--curriculum: {item!r} needs K >= 1, l >= 0, steps >= 1")
        stages.append((k, l_, steps))
    return stages


def chance_exact(k: int, pool: int) -> float:
    return 1.0 / math.perm(pool, k)


def main() -> None:
    import torch
    from PIL import Image

    from mvp.common.sample import format_answer, prompt_messages
    from mvp.model.policy import Policy
    from mvp.model.tiny import TINY, ensure_tiny_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["mvp", "match"], default="mvp")
    parser.add_argument("--train-videos", type=int, default=400)
    parser.add_argument("--heldout-videos", type=int, default=60, help="seeds never seen in training")
    parser.add_argument("--video-seconds", type=float, default=30.0)
    parser.add_argument("-k", type=int, default=3, help="K masked frames")
    parser.add_argument("-l", type=int, default=3, help="l distractors")
    parser.add_argument("-n", type=int, default=7, help="N key frames")
    parser.add_argument("--spec", default="{}", help="JSON overrides of the tiny model's spec")
    parser.add_argument("--model", type=Path, default=None, help="a Qwen2.5-VL folder instead of the tiny model")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=600.0, help="training time budget")
    parser.add_argument("--max-steps", type=int, default=1_000_000)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--curriculum", default="", help="easier stages first: 'K:l:steps,...'")
    args = parser.parse_args()
    curriculum = parse_curriculum(args.curriculum)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    t0 = time.perf_counter()
    train_seeds = list(range(args.seed * 1_000_000, args.seed * 1_000_000 + args.train_videos))
    heldout_seeds = list(range(900_000_000, 900_000_000 + args.heldout_videos))
    videos = render_videos(train_seeds + heldout_seeds, args.video_seconds)
    train_videos = {s: videos[s] for s in train_seeds}
    heldout_videos = {s: videos[s] for s in heldout_seeds}

    def rows(videos_: dict[int, list], k: int, l_: int, per_video: int, rng_: random.Random) -> list[dict]:
        if args.task == "mvp":
            return mvp_rows(videos_, k, l_, args.n, per_video)
        return match_rows(videos_, k, l_, per_video * len(videos_), rng_)

    stage_rows = {(k, l_): rows(train_videos, k, l_, 8, rng) for k, l_, _ in curriculum}
    train = rows(train_videos, args.k, args.l, 8, rng)
    heldout = rows(heldout_videos, args.k, args.l, 2, random.Random(1))
    stage_ends = list(itertools.accumulate(steps for _, _, steps in curriculum))
    spec = merge_spec(TINY, json.loads(args.spec))
    workdir = Path(tempfile.mkdtemp(prefix="mvp-probe-"))
    policy = Policy(args.model or ensure_tiny_model(workdir / "model", seed=args.seed, spec=spec))
    model = policy.model

    # Each frame goes through the image processor once.
    used = sorted({f for rows_ in [train, heldout, *stage_rows.values()] for row in rows_ for f in row["frames"]})
    pixels, grids = {}, {}
    for key in used:
        out = policy.image_processor(images=[Image.fromarray(videos[key[0]][key[1]])], return_tensors="pt")
        pixels[key], grids[key] = out["pixel_values"], out["image_grid_thw"]
    prep_s = time.perf_counter() - t0
    tok = policy.tokenizer
    prompt_ids: dict[str, torch.Tensor] = {}
    target_ids: dict[tuple[int, ...], torch.Tensor] = {}

    def encode(row: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        pv = torch.cat([pixels[f] for f in row["frames"]])
        grid = torch.cat([grids[f] for f in row["frames"]])
        if row["prompt"] not in prompt_ids:  # same frame sizes: the token ids depend on the prompt only
            prompt_ids[row["prompt"]] = policy.encode_pixels(prompt_messages(row["prompt"]), pv, grid).input_ids
        answer = tuple(row["answer"])
        if answer not in target_ids:
            text = format_answer(answer) + "<|im_end|>"
            target_ids[answer] = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        return prompt_ids[row["prompt"]], target_ids[answer], pv, grid

    def collate(rows: list[dict]):
        encs = [encode(r) for r in rows]
        length = max(len(p) + len(t) for p, t, _, _ in encs)
        ids = torch.full((len(rows), length), policy.pad_id)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        labels = torch.full((len(rows), length), -100)
        for i, (p, t, _, _) in enumerate(encs):
            ids[i, : len(p) + len(t)] = torch.cat([p, t])
            mask[i, : len(p) + len(t)] = 1
            labels[i, len(p) : len(p) + len(t)] = t
        return ids, mask, labels, torch.cat([e[2] for e in encs]), torch.cat([e[3] for e in encs])

    def forward(rows: list[dict]):
        ids, mask, labels, pv, grid = collate(rows)
        logits = model(input_ids=ids, attention_mask=mask, pixel_values=pv, image_grid_thw=grid).logits[:, :-1]
        return logits, labels[:, 1:]

    @torch.no_grad()
    def evaluate() -> float:
        """Exact accuracy of greedy answers: all teacher-forced argmaxes right <=> greedy decoding
        reproduces the answer."""
        model.eval()
        right = 0
        for i in range(0, len(heldout), 32):
            logits, target = forward(heldout[i : i + 32])
            ok = (logits.argmax(-1) == target) | (target == -100)
            right += int(ok.all(dim=1).sum())
        model.train()
        return right / len(heldout)

    chance = chance_exact(args.k, args.k + args.l)
    before = evaluate()
    print(
        f"{args.task}: {len(train)} train / {len(heldout)} held-out samples, prep {prep_s:.0f} s, "
        f"held-out exact {before:.3f} (chance {chance:.4f})",
        file=sys.stderr,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    model.train()
    curve, losses, step, t1 = [], [], 0, time.perf_counter()
    while step < args.max_steps and time.perf_counter() - t1 < args.seconds:
        step += 1
        stage = bisect.bisect_left(stage_ends, step)  # the first stage ending at or after this step
        k_l = curriculum[stage][:2] if stage < len(curriculum) else (args.k, args.l)
        source = stage_rows[k_l] if stage < len(curriculum) else train
        logits, target = forward([source[rng.randrange(len(source))] for _ in range(args.batch)])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % args.eval_every == 0:
            exact = evaluate()
            curve.append(
                {
                    "step": step,
                    "train_k_l": list(k_l),
                    "loss": round(sum(losses[-args.eval_every :]) / args.eval_every, 4),
                    "exact": exact,
                }
            )
            print(json.dumps(curve[-1]), file=sys.stderr)
    after = evaluate()
    print(
        json.dumps(
            {
                "task": args.task,
                "k": args.k,
                "pool": args.k + args.l,
                "params": sum(p.numel() for p in model.parameters()),
                "visual_tokens_per_frame": int(next(iter(grids.values()))[0].prod()) // policy.merge**2,
                "train_samples": len(train),
                "heldout_samples": len(heldout),
                "curriculum": args.curriculum,
                "steps": step,
                "samples_seen": step * args.batch,
                "train_seconds": round(time.perf_counter() - t1, 1),
                "before_exact": before,
                "after_exact": after,
                "chance_exact": chance,
                "ratio_vs_chance": round(after / chance, 2),
                "curve": curve,
            }
        )
    )


if __name__ == "__main__":
    main()
