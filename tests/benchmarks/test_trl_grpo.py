"""benchmarks/trl_grpo.py end to end on the tiny fixture with a one-second budget: TRL's GRPOTrainer takes
the multi-image MVP prompts, both trainers take a step scored by the reward-service, and the JSON carries
both step times, both reward curves and both held-out evaluations. (What it measures on mvp-smol is the
benchmark's to say, not this test's.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import REPO

pytestmark = pytest.mark.integration


def test_trl_grpo_runs_trl_and_ours_side_by_side(tmp_path: Path) -> None:
    # a group of two shows two candidate orders (the proof's four need a group of at least four)
    recipe = {"prompts_per_step": 1, "n_samples_per_prompt": 2, "orders_per_group": 2, "max_new_tokens": 4, "lr": 1e-4}
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    args = [sys.executable, "benchmarks/trl_grpo.py", "--model", "tiny", "--level", "1", "--budget-s", "1"]
    args += ["--train-videos", "1", "--heldout-videos", "1", "--samples-per-video", "2"]
    args += ["--config", str(tmp_path / "recipe.json"), "--data", str(tmp_path / "data")]
    args += ["--out", str(tmp_path / "out")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    assert result["bench"] == "trl_grpo" and result["trl_version"] == "1.16.0"
    assert result["images_per_prompt"] == 10  # level 1: 2 context frames + 8 candidates
    assert result["trl_takes_multi_image_prompts"] is True and result["trl"]["error"] is None
    assert result["train_samples"] == 2 and result["held_out_samples"] == 2
    for name in ("ours", "trl"):
        run = result[name]
        assert run["steps"] >= 1, name
        assert run["prompts_seen"] == run["steps"] * recipe["prompts_per_step"], name
        assert len(run["reward_curve"]) == len(run["exact_curve"]) == run["steps"], name
        assert all(0.0 <= r <= 1.0 for r in run["reward_curve"] + run["exact_curve"]), name
        assert run["seconds_per_step"] > 0, name
        assert set(run["after"]) >= {"exact", "exact_ci", "mean_reward", "content_dependence"}, name
        low, high = run["after_minus_before_exact_ci"]
        assert -1 <= low <= high <= 1, name
    ratio = result["ours"]["seconds_per_step"] / result["trl"]["seconds_per_step"]
    assert result["ours_over_trl_step_seconds"] == pytest.approx(ratio, abs=1e-3)
    trl = result["trl"]["config"]
    assert (trl["num_generations"], trl["per_device_train_batch_size"], trl["gradient_accumulation_steps"]) == (2, 2, 1)
    assert (trl["learning_rate"], trl["beta"], trl["temperature"], trl["max_completion_length"]) == (1e-4, 0.0, 1, 4)
    assert trl["loss_type"] == "dr_grpo" and trl["scale_rewards"] == "none" and trl["use_vllm"] is False
    assert list(result["stage_seconds"]) == ["data", "eval before", "ours", "eval ours", "trl", "eval trl"]
    assert not (tmp_path / "out" / "ours" / "checkpoints").exists()  # nothing large is kept
