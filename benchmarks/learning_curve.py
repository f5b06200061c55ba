"""The learning proof, measured: does GRPO make mvp-smol better at MVP on videos it never saw, beyond
what a no-signal control run of the same length gives?

At one MVP level (``--level``: 1 = K=1 among 8 candidates, N=3; 2 = K=2 among 9, N=4; 3 = K=3 among
6, N=8; mvp.common.synth_config.LEVELS):
1. a procedural corpus (training videos, and held-out videos from seeds far from them), synthesised
   into MVP samples by synth's pipeline (split by video);
2. optionally a supervised warm start on the *training* samples' answers (``--warm-start-epochs``):
   the base must read the frames before GRPO can sharpen that; the warm-started model is then the
   "before" and the control's start, so the gain claimed is GRPO's alone;
3. "before": held-out evaluation with the content-dependence diagnostic;
4. GRPO (the local trainer, rewards from a real reward-service over gRPC) for ``--budget-s`` seconds;
5. the control: the same GRPO from the same start, with the labels shuffled within each group
   (``control_random_labels``: the format signal stays, the MVP signal goes);
6. paired bootstrap 95% intervals of after - before and after - control (exact, mean reward).

The bar (issue #33, the same at every level): after - before >= +0.10 and after - control >= +0.10
exact, both intervals above 0, GRPO within 1,800 s. The last line is JSON.

    python benchmarks/learning_curve.py --level 1 [--budget-s 1800] [--warm-start-epochs 1]
        [--no-control] [--config grpo.json] [--device cpu|cuda] [--out .mvp-learning]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The proof's GRPO recipe (a --config file's LocalTrainConfig fields replace these).
RECIPE: dict = {
    "prompts_per_step": 4,
    "n_samples_per_prompt": 8,
    "lr": 5e-6,
    "advantage_estimator": "dr_grpo",
    "entropy_coef": 0.01,
    "balanced_groups": True,
    # four candidate orders, each shown to two members as one prompt: half the prompt rows of one
    # order per member, the first masked frame still on four positions per group
    "orders_per_group": 4,
    # no reference forward: the KL term (1e-3 before) cost a quarter of each update
    "init_kl_coef": 0.0,
    # bf16_update and bf16_prefill: where the device has bf16 kernels (trainer.precision.fast_bf16), unless
    # --config sets them
    "save_steps": 100_000,
    "max_ckpt_num": 1,
}
BAR_GAIN = 0.10
BAR_GRPO_SECONDS = 1800.0


class Stages:
    """Wall seconds of each named stage, in order."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, func):
        t0 = time.perf_counter()
        print(f"== {name}", file=sys.stderr, flush=True)
        out = func()
        self.seconds[name] = round(time.perf_counter() - t0, 1)
        print(f"   {name}: {self.seconds[name]} s", file=sys.stderr, flush=True)
        return out


def make_data(out: Path, level: int, train_videos: int, heldout_videos: int, per_video: int, seed: int) -> dict:
    """Corpus and samples (reused when already there: same seeds and config give the same files)."""
    from mvp.common.procedural import write_corpus
    from mvp.common.seeds import corpus_seed
    from mvp.common.settings import StoreSettings
    from mvp.common.synth_config import level_config
    from mvp.synth.corpus import run_corpus

    config = level_config(level, samples_per_video=per_video, seed=seed)
    paths = {}
    for split, count in {"train": train_videos, "heldout": heldout_videos}.items():
        first = corpus_seed(seed, split, count)
        videos = out / "videos" / split
        write_corpus(videos, count, seed=first, workers=os.cpu_count() or 1, seconds=20.0)
        samples = out / "samples" / config.digest() / split
        if not (samples / "samples.jsonl").exists():
            run_corpus(StoreSettings(), str(videos), str(samples), config, workers=os.cpu_count() or 1)
        paths[split] = str(samples / "samples.jsonl")
    return paths


def warm_start(policy, train, epochs: int, lr: float, seed: int, encoded, keep: Path | None = None) -> dict:
    """Supervised epochs on the training samples' answers (the parameters GRPO trains). With ``keep``,
    the warm-started weights are saved there (safetensors, written then renamed) and a later run with
    the same data, model, epochs, lr and seed loads them instead of training again."""
    import torch
    from safetensors.torch import load_model, save_model

    from mvp.trainer.config import LocalTrainConfig
    from mvp.trainer.local import select_trainable
    from mvp.trainer.supervised import supervised_epoch

    facts = {"epochs": epochs, "lr": lr, "samples": len(train)}
    saved = keep / "warm_start.json" if keep else None
    if saved and saved.exists() and json.loads(saved.read_text())["facts"] == facts:
        load_model(policy.model, str(keep / "warm_start.safetensors"))
        return {**json.loads(saved.read_text())["result"], "loaded_from": str(keep)}
    trainable = select_trainable(policy.model, LocalTrainConfig())
    optimizer = torch.optim.AdamW(trainable, lr=lr)
    rng = random.Random(seed)
    losses = [supervised_epoch(policy, train, optimizer, trainable, 8, encoded, rng) for _ in range(epochs)]
    result = {**facts, "losses": [round(x, 4) for x in losses]}
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        save_model(policy.model, str(keep / "warm_start.safetensors.part"))
        (keep / "warm_start.safetensors.part").replace(keep / "warm_start.safetensors")
        saved.write_text(json.dumps({"facts": facts, "result": result}))
    return result


def grpo(policy, train, score, recipe: dict, budget_s: float, out: Path, control: bool, encoded_cache: dict) -> dict:
    """One GRPO run on ``policy`` (changed in place) for ``budget_s`` seconds; its metrics.jsonl,
    TensorBoard events and curves.png go to ``out``."""
    from mvp.common.storage import Storage
    from mvp.trainer.curves import CurveLogger
    from mvp.trainer.local import LocalTrainConfig, LocalTrainer

    # a fresh run: an earlier run's metrics.jsonl (appended to), events and checkpoints in the same
    # folder would otherwise mix into this run's windows and curves
    for stale in ("train", "checkpoints"):
        shutil.rmtree(out / stale, ignore_errors=True)
    config = LocalTrainConfig(
        # steps: the budget stops the run unless the recipe sets a count (cosine_with_min_lr decays over it)
        **{"steps": 100_000, **recipe, "time_budget_s": budget_s, "control_random_labels": control}
    )
    curves = CurveLogger(out / "train")
    trainer = LocalTrainer(
        policy,
        train,
        score,
        config,
        Storage(),
        str(out / "checkpoints"),
        on_log=lambda e: curves.log(e.step, e.values),
        encode_cache=encoded_cache,
    )
    facts = trainer.fit()
    facts["curves"] = str(curves.close())
    rows = [json.loads(x) for x in (out / "train" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    rewards = [r["reward"] for r in rows if "reward" in r]
    exact = [r["exact"] for r in rows if "exact" in r]
    window = max(1, len(rewards) // 5)
    facts["train_reward_by_window"] = [
        round(sum(rewards[i : i + window]) / len(rewards[i : i + window]), 4) for i in range(0, len(rewards), window)
    ]
    facts["train_exact_by_window"] = [
        round(sum(exact[i : i + window]) / len(exact[i : i + window]), 4) for i in range(0, len(exact), window)
    ]
    facts["steps"] = trainer.step
    return facts


def summary(result: dict) -> dict:
    keep = ("samples", "exact", "exact_ci", "mean_reward", "mean_reward_ci", "selection", "ordering", "format")
    extra = {"loaded_from": result["loaded_from"]} if "loaded_from" in result else {}
    return {**{k: result[k] for k in keep}, "content_dependence": result["content_dependence"], **extra}


def prepare(args, data_dir: Path, models_dir: Path) -> dict:
    """What the proof and the TRL comparison share: the recipe (a --config file over RECIPE), the
    stage clock, the data, the starting policy, an encode cache over it and the generation budget."""
    import torch

    from mvp.common.storage import Storage
    from mvp.model.policy import Policy
    from mvp.model.resolve import resolve_model
    from mvp.trainer.config import LocalTrainConfig
    from mvp.trainer.data import load_examples
    from mvp.trainer.precision import fast_bf16

    recipe = {**RECIPE, **(json.loads(args.config.read_text()) if args.config else {}), "seed": args.seed}
    for key in ("bf16_update", "bf16_prefill"):
        if key not in recipe:
            recipe[key] = fast_bf16(args.device)
            print(f"   {key}={recipe[key]} (whether {args.device} has bf16 kernels)")
    stages = Stages()
    args.out.mkdir(parents=True, exist_ok=True)
    paths = stages.run(
        "data",
        lambda: make_data(
            data_dir, args.level, args.train_videos, args.heldout_videos, args.samples_per_video, args.seed
        ),
    )
    storage = Storage()
    torch.manual_seed(args.seed)
    model_path = resolve_model(args.model, storage, models_dir)
    policy = Policy(model_path, device=args.device)
    cache: dict = {}

    def encoded(ex):
        if ex.id not in cache:
            cache[ex.id] = policy.encode(ex.prompt, ex.images)
        return cache[ex.id]

    return {
        "recipe": recipe,
        "stages": stages,
        "train": load_examples(storage, paths["train"]),
        "held": load_examples(storage, paths["heldout"]),
        "model_path": model_path,
        "policy": policy,
        "cache": cache,
        "encoded": encoded,
        "budget": LocalTrainConfig(**recipe).max_new_tokens,
    }


def weights_digest(model) -> str:
    """sha256 of every parameter and buffer (names, dtypes, shapes and bytes, in name order)."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def samples_digest(examples) -> str:
    """sha256 of the samples as the model sees them: ids, prompts, labels and every image's pixels."""
    import hashlib

    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps([ex.id, ex.prompt, ex.label_json]).encode())
        for image in ex.images:
            digest.update(f"{image.mode}{image.size}".encode() + image.tobytes())
    return digest.hexdigest()


def held_out_evaluator(policy, held, score, budget: int, encoded, out: Path, seed: int, device: str = "cpu"):
    """``name -> (result, rows)``: the held-out evaluation with the diagnostic, its rows written to
    out/predictions_<name>.jsonl. Greedy evaluation is a pure function of the weights, the held-out
    samples, the budget, the seed and the device, so with ``reuse`` a result saved under
    out/evals/ for exactly those inputs is loaded instead of computed again (a rerun of the proof
    with another GRPO recipe starts from the same "before"); the result then says where from."""
    from mvp.trainer.evaluate import evaluate

    def held_out(name: str, reuse: bool = False) -> tuple[dict, list[dict]]:
        key = ""
        if reuse:
            import hashlib

            facts = {
                "weights": weights_digest(policy.model),
                "samples": samples_digest(held),
                "budget": budget,
                "seed": seed,
                "device": device,
            }
            key = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]
            saved = out / "evals" / f"{key}.json"
            if saved.exists():
                loaded = json.loads(saved.read_text())
                (out / f"predictions_{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in loaded["rows"]))
                return {**loaded["result"], "loaded_from": str(saved)}, loaded["rows"]
        rows: list[dict] = []
        result = evaluate(policy, held, score, budget, encoded, rows, diagnostics=True, seed=seed)
        (out / f"predictions_{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        if key:
            (out / "evals").mkdir(parents=True, exist_ok=True)
            part = out / "evals" / f"{key}.json.part"
            part.write_text(json.dumps({"result": result, "rows": rows}))
            part.replace(out / "evals" / f"{key}.json")
        return result, rows

    return held_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", type=int, default=1, choices=[1, 2, 3])
    parser.add_argument("--model", default="smol", help="starting model: 'smol', 'tiny' or a folder")
    parser.add_argument("--budget-s", type=float, default=1800.0, help="GRPO time budget of each run")
    parser.add_argument("--control", action=argparse.BooleanOptionalAction, default=True, help="run the control")
    parser.add_argument("--warm-start-epochs", type=int, default=0, help="supervised epochs before GRPO (0: none)")
    parser.add_argument("--warm-start-lr", type=float, default=1e-5)
    parser.add_argument("--train-videos", type=int, default=96)
    parser.add_argument("--heldout-videos", type=int, default=64)
    parser.add_argument("--samples-per-video", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (picked once; every stage uses it)")
    parser.add_argument("--config", type=Path, default=None, help="JSON of LocalTrainConfig fields over the recipe")
    parser.add_argument("--out", type=Path, default=REPO / ".mvp-learning", help="working folder (data reused)")
    args = parser.parse_args()

    from mvp.clients import RewardClient
    from mvp.trainer.stats import paired_difference, per_sample
    from tests.procs import start_reward

    run = prepare(args, args.out / "data", args.out / "models")
    recipe, stages, train, held, policy, cache = (
        run[k] for k in ("recipe", "stages", "train", "held", "policy", "cache")
    )
    encoded = run["encoded"]

    with tempfile.TemporaryDirectory() as tmp:
        reward = start_reward(Path(tmp))
        try:
            client = RewardClient(f"127.0.0.1:{reward.ports['grpc']}")
            client.wait_healthy(timeout_s=60)
            held_out = held_out_evaluator(
                policy, held, client.score, run["budget"], encoded, args.out, args.seed, args.device
            )

            warm = None
            if args.warm_start_epochs:
                warm = stages.run(
                    "warm start",
                    lambda: warm_start(
                        policy,
                        train,
                        args.warm_start_epochs,
                        args.warm_start_lr,
                        args.seed,
                        encoded,
                        args.out / "models" / f"warm-{Path(args.model).name}-level{args.level}-seed{args.seed}",
                    ),
                )
            start_state = copy.deepcopy(policy.model.state_dict())
            before, before_rows = stages.run("eval before", lambda: held_out("before", reuse=True))
            main_run = stages.run(
                "grpo",
                lambda: grpo(policy, train, client.score, recipe, args.budget_s, args.out / "main", False, cache),
            )
            after, after_rows = stages.run("eval after", lambda: held_out("after"))
            control = control_rows = control_run = None
            if args.control:
                policy.model.load_state_dict(start_state)
                control_run = stages.run(
                    "grpo control",
                    lambda: grpo(policy, train, client.score, recipe, args.budget_s, args.out / "control", True, cache),
                )
                control, control_rows = stages.run("eval control", lambda: held_out("control"))
            client.close()
        finally:
            reward.stop()

    def diff(a_rows, b_rows, key):
        return paired_difference(per_sample(a_rows, key), per_sample(b_rows, key), seed=args.seed)

    gain = diff(after_rows, before_rows, "exact")
    result: dict = {
        "bench": "learning_curve",
        "level": args.level,
        "task": {k: getattr(held[0], k, None) for k in ("k", "num_candidates")},
        "model": args.model,
        "device": args.device,
        "recipe": recipe,
        "train_samples": len(train),
        "held_out_samples": len(held),
        "held_out_videos": args.heldout_videos,
        "chance_exact": before["chance_exact"],
        "warm_start": warm,
        "before": summary(before),
        "after": summary(after),
        "after_minus_before_exact": gain["mean"],
        "after_minus_before_exact_ci": gain["ci"],
        "after_minus_before_reward_ci": diff(after_rows, before_rows, "reward")["ci"],
        "grpo": {k: main_run[k] for k in main_run if k != "curves"},
        "curves": main_run["curves"],
    }
    meets = (
        gain["mean"] >= BAR_GAIN and gain["ci"][0] > 0 and (main_run.get("train_seconds") or 0) <= BAR_GRPO_SECONDS + 60
    )
    if control is not None:
        vs = diff(after_rows, control_rows, "exact")
        result.update(
            {
                "control": summary(control),
                "control_grpo": {k: control_run[k] for k in control_run if k != "curves"},
                "after_minus_control_exact": vs["mean"],
                "after_minus_control_exact_ci": vs["ci"],
                "after_minus_control_reward_ci": diff(after_rows, control_rows, "reward")["ci"],
                "control_minus_before_exact_ci": diff(control_rows, before_rows, "exact")["ci"],
            }
        )
        meets = meets and vs["mean"] >= BAR_GAIN and vs["ci"][0] > 0
    result.update(
        {
            "bar": f"after-before >= {BAR_GAIN} and after-control >= {BAR_GAIN} exact, intervals above 0, "
            f"GRPO <= {BAR_GRPO_SECONDS:.0f} s",
            "meets_bar": bool(meets and control is not None),
            "stage_seconds": stages.seconds,
        }
    )
    print(
        f"level {args.level}: held-out exact {before['exact']:.3f} -> {after['exact']:.3f} "
        f"(chance {before['chance_exact']:.3f}; after-before {gain['mean']:+.3f} {gain['ci']})"
        + (f", control {control['exact']:.3f}" if control else ""),
        file=sys.stderr,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
