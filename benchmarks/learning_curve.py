"""The learning proof, measured: the main job (`mvp run`: procedural corpus -> synth-service ->
baseline eval -> local GRPO with rewards from reward-service over gRPC -> final eval) on mvp-smol,
GRPO only (from the aligned base), with a training time budget, on held-out samples from videos
generated from seeds never seen in training; then the same run again as the control, with every
group scored against a random answer instead of its label (`control_random_labels`), so a gain that
the control also shows cannot come from the MVP reward.

Default task: K=3 masked frames among 6 candidates (l=3 hard negatives from the same video), N=8
key frames: chance of an exact answer 1/120.

Writes OUT/main and OUT/control (each: report/, train/curves.png, TensorBoard events) and ends with
one JSON line: before_exact, after_exact, chance_exact, before_reward, after_reward,
control_after_exact, grpo_seconds, the per-component means, and the bar of issue #17 (after_exact
>= 0.10, >= 10x chance and >= before_exact + 0.05; the control not).

    python benchmarks/learning_curve.py [--budget-s 1800] [--no-control] [--reuse] [--out .mvp-learning]
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

# The proof's task and recipe (the CLI's --config merges over it).
PROOF: dict = {
    "model": "smol",
    "videos": 64,
    "video_seconds": 20.0,
    "eval_limit": 64,
    "synth": {"num_frames": 8, "num_masked": 3, "num_distractors": 3, "samples_per_video": 4},
    "train": {"prompts_per_step": 4, "n_samples_per_prompt": 8, "checkpoint_every": 1000, "lr": 1e-5},
}
COMPONENTS = ("exact", "selection", "ordering", "format", "mean_reward")


def run(config: dict, out: Path, reuse: bool = False) -> dict:
    """One `mvp run` with ``config``; returns its report.json facts and wall seconds. With ``reuse``,
    a finished run already in ``out`` (same config) is read instead of run again."""
    report = out / "report" / "report.json"
    if reuse and report.exists():
        facts = json.loads(report.read_text())
        if facts["config"]["train"].get("control_random_labels", False) == config["train"].get(
            "control_random_labels", False
        ):
            facts["wall_seconds"] = None
            return facts
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mvp.cli", "run", "--config", f.name, "--out", str(out)], cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"learning_curve: mvp run failed (exit {proc.returncode}); see {out}/logs")
    facts = json.loads((out / "report" / "report.json").read_text())
    facts["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return facts


def train_means(out: Path, first: int = 10) -> dict:
    """Mean training reward of the first and last ``first`` GRPO steps (from metrics.jsonl)."""
    path = out / "train" / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    rewards = [r["reward"] for r in rows if "reward" in r]
    if not rewards:
        return {}
    head, tail = rewards[:first], rewards[-first:]
    return {"train_reward_first": round(sum(head) / len(head), 4), "train_reward_last": round(sum(tail) / len(tail), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=1800.0, help="GRPO time budget of each run (30 min)")
    parser.add_argument("--control", action=argparse.BooleanOptionalAction, default=True, help="run the control")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="read finished runs already under --out")
    parser.add_argument("--out", type=Path, default=REPO / ".mvp-learning", help="working folder (replaced)")
    parser.add_argument("--config", type=Path, default=None, help="RunConfig fields merged over the proof's")
    args = parser.parse_args()

    config = json.loads(json.dumps(PROOF))
    config["seed"] = args.seed
    config["steps"] = 100_000  # the time budget ends training
    config["train"]["time_budget_s"] = args.budget_s
    if args.config:
        from mvp.common.settings import load_config_file

        extra = load_config_file(args.config)
        for key, value in extra.items():
            config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    main_facts = run(config, args.out / "main", args.reuse)
    control_facts = None
    if args.control:
        control = {**config, "train": {**config["train"], "control_random_labels": True}}
        control_facts = run(control, args.out / "control", args.reuse)

    before, after = main_facts["evals"]["before"], main_facts["evals"]["after"]
    chance = main_facts["chance_exact"]
    bar = max(0.10, 10 * chance, before["exact"] + 0.05)
    result: dict = {
        "bench": "learning_curve",
        "model": config["model"],
        "task": {k: config["synth"][k] for k in ("num_frames", "num_masked", "num_distractors")},
        "before_exact": before["exact"],
        "after_exact": after["exact"],
        "chance_exact": chance,
        "before_reward": before["mean_reward"],
        "after_reward": after["mean_reward"],
        **{f"before_{c}": before[c] for c in COMPONENTS if c not in ("exact", "mean_reward")},
        **{f"after_{c}": after[c] for c in COMPONENTS if c not in ("exact", "mean_reward")},
        "held_out_samples": after["samples"],
        "grpo_seconds": main_facts["training"].get("train_seconds"),
        "grpo_steps": main_facts["training"].get("steps"),
        "completions_per_step": config["train"]["prompts_per_step"] * config["train"]["n_samples_per_prompt"],
        **train_means(args.out / "main"),
        "time_budget_s": args.budget_s,
        "bar_exact": round(bar, 4),
        "meets_bar": after["exact"] >= bar and (main_facts["training"].get("train_seconds") or 0) <= 1800 + 60,
        "ratio_after_to_chance": round(after["exact"] / chance, 2),
        "curves": str(args.out / "main" / "train" / "curves.png"),
        "wall_seconds": main_facts["wall_seconds"],
    }
    if control_facts:
        c_after = control_facts["evals"]["after"]
        result.update(
            {
                "control_before_exact": control_facts["evals"]["before"]["exact"],
                "control_after_exact": c_after["exact"],
                "control_after_reward": c_after["mean_reward"],
                "control_after_selection": c_after["selection"],
                "control_after_ordering": c_after["ordering"],
                "control_grpo_seconds": control_facts["training"].get("train_seconds"),
                "control_grpo_steps": control_facts["training"].get("steps"),
                "control_meets_bar": c_after["exact"] >= bar,
                **{f"control_{k}": v for k, v in train_means(args.out / "control").items()},
            }
        )
        result["meets_bar"] = result["meets_bar"] and not result["control_meets_bar"]
    print(
        f"held-out exact {before['exact']:.3f} -> {after['exact']:.3f} (chance {chance:.4f}, bar {bar:.3f})"
        + (f", control -> {result['control_after_exact']:.3f}" if control_facts else "")
        + f"; mean reward {before['mean_reward']:.3f} -> {after['mean_reward']:.3f}",
        file=sys.stderr,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
