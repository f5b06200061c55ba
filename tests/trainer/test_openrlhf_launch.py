"""The OpenRLHF launch path, as far as this machine allows: every shipped recipe becomes flags that
OpenRLHF 0.11.2's (recorded) parser accepts and its post-parse checks pass; the staged dataset has
chat messages and presigned image URLs that really download; --dry-run prints the Ray command."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest

from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from mvp.trainer.openrlhf_args import RECORDING, parser
from mvp.trainer.openrlhf_launch import Recipe, RecipeError, build_args, check_args, stage_dataset
from tests.procs import MVP, REPO, Proc

pytestmark = pytest.mark.integration

# The shipped recipes and their in-cluster copies mounted into the KubeRay RayJob.
RECIPES = sorted((REPO / "trainer/recipes").glob("*.yaml")) + sorted((REPO / "k8s").rglob("recipe.yaml"))


def test_recording_is_complete() -> None:
    calls = json.loads(RECORDING.read_text())
    flags = {c["flags"][0] for c in calls}
    assert len(calls) > 150
    assert {
        "--reward.remote_url",
        "--algo.advantage.estimator",
        "--rollout.n_samples_per_prompt",
        "--data.image_key",
        "--actor.optim",
        "--critic.optim",
    } <= flags
    assert len(parser()._actions) == len(calls)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipes_produce_valid_openrlhf_args(path: Path) -> None:
    recipe = Recipe.load(path)
    args = build_args(recipe, "openrlhf.jsonl", "eval/openrlhf.jsonl")
    ns = check_args(args)
    assert ns["algo.advantage.estimator"] == "group_norm"
    assert ns["algo.kl.estimator"] == "k3" and ns["algo.kl.use_loss"] is True
    assert ns["rollout.n_samples_per_prompt"] == recipe.grpo.n_samples_per_prompt > 1
    if recipe.reward_url == "reward_func":  # the installed plug-in file, which OpenRLHF loads by path
        import mvp.reward.reward_func as plugin

        assert ns["reward.remote_url"] == plugin.__file__
    else:
        assert ns["reward.remote_url"] == recipe.reward_url
    assert ns["data.input_key"] == "prompt" and ns["data.label_key"] == "label"
    assert ns["data.apply_chat_template"] is True and ns["data.max_images_per_prompt"] > 0


def test_invalid_recipes_are_refused() -> None:
    recipe = Recipe.load(RECIPES[0])
    bad = recipe.model_copy(update={"extra_args": {"--no_such_flag": 1}})
    with pytest.raises(RecipeError, match="does not know"):
        check_args(build_args(bad, "d.jsonl"))
    packing = recipe.model_copy(update={"extra_args": {"ds.packing_samples": True}})
    with pytest.raises(RecipeError, match="packing"):
        check_args(build_args(packing, "d.jsonl"))


def test_staged_dataset_has_messages_and_fetchable_image_urls(s3_settings: StoreSettings, tmp_path: Path) -> None:
    storage = Storage(s3_settings)
    storage.ensure_bucket("mvp")
    storage.put_bytes("s3://mvp/stage/frames/a.jpg", b"\xff\xd8jpeg-bytes")
    row = {
        "id": "x",
        "prompt": "Frame 1: <image>\\nCandidates:\\nCandidate 1: <image>",
        "label": "{}",
        "images": ["s3://mvp/stage/frames/a.jpg", "s3://mvp/stage/frames/a.jpg"],
    }
    storage.put_bytes("s3://mvp/stage/openrlhf.jsonl", (json.dumps(row) + "\n").encode())
    staged = stage_dataset(storage, "s3://mvp/stage/openrlhf.jsonl", tmp_path)
    out = json.loads(staged.read_text().splitlines()[0])
    kinds = [part["type"] for part in out["prompt"][0]["content"]]
    assert kinds.count("image") == 2 and out["prompt"][0]["role"] == "user"
    assert urllib.request.urlopen(out["images"][0], timeout=10).read() == b"\xff\xd8jpeg-bytes"


@pytest.mark.parametrize("mode", ["ray-submit", "exec"])
def test_cli_dry_run(mode: str, s3_server: Proc, s3_settings: StoreSettings, tmp_path: Path) -> None:
    storage = Storage(s3_settings)
    storage.ensure_bucket("mvp")
    row = {"id": "x", "prompt": "<image>", "label": "{}", "images": ["s3://mvp/dry/f.jpg"]}
    storage.put_bytes("s3://mvp/dry/openrlhf.jsonl", (json.dumps(row) + "\n").encode())
    recipe = Recipe.load(RECIPES[0]).model_copy(update={"dataset": "s3://mvp/dry/openrlhf.jsonl", "eval_dataset": None})
    config = tmp_path / "r.json"
    config.write_text(recipe.model_dump_json())
    proc = subprocess.run(
        [
            *MVP,
            "train",
            "--backend",
            "openrlhf",
            "--config",
            str(config),
            "--dry-run",
            "--launch",
            mode,
            "--staging",
            str(tmp_path / "job"),
            "--endpoint",
            f"http://127.0.0.1:{s3_server.ports['s3']}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "openrlhf.cli.train_ppo_ray" in proc.stdout
    if mode == "ray-submit":  # dataset path relative to the working_dir Ray ships
        assert "ray job submit" in proc.stdout and "--data.prompt_dataset openrlhf.jsonl" in proc.stdout
    else:  # the RayJob driver: OpenRLHF runs here, the dataset is on the shared volume
        assert "ray job submit" not in proc.stdout
        assert f"--data.prompt_dataset {(tmp_path / 'job' / 'openrlhf.jsonl').resolve()}" in proc.stdout
    assert "--algo.advantage.estimator group_norm" in proc.stdout
    assert (tmp_path / "job" / "openrlhf.jsonl").exists()


# Every field of the local recipe, sorted: the ones the OpenRLHF recipe also has (same name, same
# meaning, ``grpo.`` for its GRPO section) and the local loop's own, each with why OpenRLHF has none.
SHARED = {"lr", "seed", "save_steps", "max_ckpt_num", "eval_steps"}
SHARED_GRPO = {
    "n_samples_per_prompt",
    "init_kl_coef",
    "eps_clip",
    "temperature",
    "max_new_tokens",
    "entropy_coef",
    "advantage_estimator",
}
LOCAL_ONLY = {
    "steps": "OpenRLHF counts episodes over the dataset (batch.episodes)",
    "prompts_per_step": "OpenRLHF sizes batches in sequences (batch.rollout_batch_size)",
    "lr_scheduler": "OpenRLHF's scheduler is a train_ppo_ray flag (extra_args: --actor.lr_scheduler)",
    "min_lr_ratio": "as lr_scheduler",
    "weight_decay": "as lr_scheduler (--actor.adam.l2)",
    "ppo_epochs": "OpenRLHF's batch.max_epochs",
    "max_grad_norm": "a train_ppo_ray flag (extra_args)",
    "sft_steps": "the tiny test fixture's format warm-up; the cluster trains mvp-smol, which writes the format",
    "sft_lr": "as sft_steps",
    "time_budget_s": "a CPU run's wall budget; a cluster run ends by episodes",
    "train_vision": "a narrower knob: the ViT blocks only (the merger always trains); OpenRLHF's "
    "freeze_visual_encoder freezes every non-language parameter, merger included (its actor.py)",
    "train_embeddings": "OpenRLHF trains every parameter of the language model",
    "bf16_update": "OpenRLHF always trains in bf16 (ds.param_dtype)",
    "bf16_prefill": "vLLM, OpenRLHF's rollout engine, generates in the model's dtype (bf16 in the recipes)",
    "control_random_labels": "the learning proof's control run (a measurement, not a cluster recipe)",
    "balanced_groups": "the OpenRLHF route is permuted copies in the staged dataset (docs/trainer.md)",
    "orders_per_group": "as balanced_groups (the copies per sample are the orders)",
}


def test_every_local_training_field_is_openrlhfs_or_says_why_not() -> None:
    """The local loop and the OpenRLHF recipe use one name for one idea: a field both have is spelt the
    same (OpenRLHF's name) in both, and every other local field is listed with the reason it has no
    OpenRLHF counterpart, so a new field must be classified here."""
    from mvp.trainer.config import LocalTrainConfig
    from mvp.trainer.openrlhf_launch import GrpoSection

    local = set(LocalTrainConfig.model_fields)
    assert local == SHARED | SHARED_GRPO | set(LOCAL_ONLY), local ^ (SHARED | SHARED_GRPO | set(LOCAL_ONLY))
    assert set(Recipe.model_fields) >= SHARED
    assert set(GrpoSection.model_fields) >= SHARED_GRPO
    assert not set(LOCAL_ONLY) & (set(Recipe.model_fields) | set(GrpoSection.model_fields))
    # the same sense: the GRPO section is the local config's own class, with the same defaults
    for name in SHARED_GRPO:
        assert GrpoSection.model_fields[name].default == LocalTrainConfig.model_fields[name].default, name
