"""benchmarks/learning_curve.py end to end on the tiny fixture with seconds-long budgets: data, warm
start, before, GRPO, after, control; its JSON carries the paired intervals, the diagnostic, every
stage's time and the bar's verdict. (What it measures on mvp-smol is in docs/trainer.md.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import REPO

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_learning_curve_runs_main_and_control_and_states_intervals(tmp_path: Path) -> None:
    recipe = {"prompts_per_step": 1, "n_samples_per_prompt": 4, "max_new_tokens": 6, "lr": 1e-4}
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    args = [sys.executable, "benchmarks/learning_curve.py", "--model", "tiny", "--level", "1"]
    args += ["--budget-s", "3", "--warm-start-epochs", "1", "--train-videos", "2", "--heldout-videos", "2"]
    args += ["--samples-per-video", "2", "--config", str(tmp_path / "recipe.json"), "--out", str(tmp_path / "out")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["bench"] == "learning_curve" and result["level"] == 1 and result["chance_exact"] == 1 / 8
    assert result["held_out_samples"] == 4 and result["train_samples"] == 4
    for key in ("after_minus_before_exact_ci", "after_minus_control_exact_ci", "after_minus_control_reward_ci"):
        low, high = result[key]
        assert -1 <= low <= high <= 1, key
    assert result["recipe"]["balanced_groups"] is True and result["recipe"]["max_new_tokens"] == 6
    # bf16 only where the device has bf16 kernels (50x slower than fp32 where it has none)
    from mvp.trainer.precision import fast_bf16

    assert result["recipe"]["bf16_update"] is fast_bf16("cpu")
    for run in ("before", "after", "control"):
        assert set(result[run]["content_dependence"]) >= {"follows_frame", "follows_number", "answer_information_nats"}
    assert result["grpo"]["steps"] >= 1 and result["grpo"]["prompts_seen"] == result["grpo"]["steps"]
    assert list(result["stage_seconds"]) == [
        "data",
        "warm start",
        "eval before",
        "grpo",
        "eval after",
        "grpo control",
        "eval control",
    ]
    assert result["meets_bar"] is False  # three seconds of GRPO on a random-init model learn nothing
    assert (tmp_path / "out" / "main" / "train" / "curves.png").stat().st_size > 0
    # a second run in the same folder loads the saved warm start instead of training it again
    args[args.index("--budget-s") + 1] = "1"
    proc = subprocess.run([*args, "--no-control"], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads(proc.stdout.strip().splitlines()[-1])
    assert again["warm_start"]["loaded_from"].endswith("warm-tiny-level1-seed0")
    assert again["warm_start"]["losses"] == result["warm_start"]["losses"]
    # the same weights, samples, budget and seed: the saved "before" is loaded, not computed again
    assert again["before"].pop("loaded_from").startswith(str(tmp_path / "out" / "evals"))
    assert again["before"] == result["before"]
    # the second GRPO run starts a fresh metrics.jsonl: its windows hold its own steps only
    lines = (tmp_path / "out" / "main" / "train" / "metrics.jsonl").read_text().splitlines()
    assert len([row for row in map(json.loads, lines) if "reward" in row]) == again["grpo"]["steps"]
