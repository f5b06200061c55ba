"""The learning proof, measured: the main job (`mvp run`: procedural corpus -> synth-service ->
baseline eval -> local GRPO with rewards from reward-service over gRPC -> final eval) with a
training time budget, on held-out videos generated from seeds never seen in training.

Prints the before/after held-out figures against chance and the bar of issue #5 (exact accuracy
>= 0.10 absolute and >= 10x chance), writes the training curves (PNG + TensorBoard under
OUT/train, and OUT/report), and ends with one JSON line: before_exact, after_exact, chance_exact,
before_reward, after_reward (and more).

    python benchmarks/learning_curve.py [--budget-s 900] [--videos 160] [--out .mvp-learning]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=900.0, help="GRPO training time budget (15 min)")
    parser.add_argument("--videos", type=int, default=160, help="procedural videos (a quarter held out)")
    parser.add_argument("--video-seconds", type=float, default=30.0)
    parser.add_argument("--eval-limit", type=int, default=64, help="held-out samples evaluated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / ".mvp-learning", help="working folder (replaced)")
    parser.add_argument("--config", type=Path, default=None, help="extra RunConfig fields (JSON/YAML)")
    args = parser.parse_args()

    config: dict = {
        "videos": args.videos,
        "video_seconds": args.video_seconds,
        "steps": 100_000,  # the time budget ends training
        "seed": args.seed,
        "eval_limit": args.eval_limit,
        "train": {"time_budget_s": args.budget_s, "checkpoint_every": 100},
    }
    if args.config:
        from mvp.common.settings import load_config_file

        extra = load_config_file(args.config)
        config = {**config, **extra, "train": {**config["train"], **extra.get("train", {})}}
    shutil.rmtree(args.out, ignore_errors=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mvp.cli", "run", "--config", f.name, "--out", str(args.out)], cwd=REPO
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"learning_curve: mvp run failed (exit {proc.returncode}); see {args.out}/logs", file=sys.stderr)
        return 1
    facts = json.loads((args.out / "report" / "report.json").read_text())
    before, after, chance = facts["evals"]["before"], facts["evals"]["after"], facts["chance_exact"]
    bar = max(0.10, 10 * chance)
    result = {
        "bench": "learning_curve",
        "before_exact": before["exact"],
        "after_exact": after["exact"],
        "chance_exact": chance,
        "before_reward": before["mean_reward"],
        "after_reward": after["mean_reward"],
        "before_selection": before["selection"],
        "after_selection": after["selection"],
        "before_format": before["format"],
        "after_format": after["format"],
        "held_out_samples": after["samples"],
        "train_seconds": facts["training"].get("train_seconds"),
        "grpo_steps": facts["training"].get("steps"),
        "time_budget_s": args.budget_s,
        "wall_seconds": round(wall, 1),
        "bar_exact": bar,
        "meets_bar": after["exact"] >= bar,
        "curves": str(args.out / "report" / "curves.png"),
    }
    print(
        f"held-out exact {before['exact']:.3f} -> {after['exact']:.3f} (chance {chance:.4f}, bar {bar:.3f}); "
        f"mean reward {before['mean_reward']:.3f} -> {after['mean_reward']:.3f}",
        file=sys.stderr,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
