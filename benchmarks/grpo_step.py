"""Seconds per GRPO step of the local backend (generation, reward over gRPC, update) for mvp-smol
(or the tiny fixture) at a stated batch and group size (TRL's GRPOTrainer beside it: benchmarks/trl_grpo.py).

Starts a reward-service process, synthesises a few samples, runs the format warm-up (tiny only:
mvp-smol's alignment already taught the format), then times `--steps` GRPO steps. The last line is
JSON, with the peak RSS of the process.

    python benchmarks/grpo_step.py [--model smol|tiny] [--steps 10] [--prompts 4] [--group 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import resource

    import torch

    from mvp.clients import RewardClient
    from mvp.common.procedural import write_corpus
    from mvp.common.settings import StoreSettings
    from mvp.common.storage import Storage
    from mvp.common.synth_config import SynthConfig
    from mvp.model.policy import Policy
    from mvp.model.smol import ensure_smol_model
    from mvp.model.tiny import ensure_tiny_model
    from mvp.synth.corpus import run_corpus
    from mvp.trainer.data import load_examples
    from mvp.trainer.local import LocalTrainConfig, LocalTrainer
    from tests.procs import start_reward

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["smol", "tiny"], default="smol")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument(
        "--reference-steps", type=int, default=2, help="steps timed with the prompt run by every member (reference)"
    )
    parser.add_argument("--bf16-update", action="store_true", help="the update under bf16 autocast")
    parser.add_argument("--kl-coef", type=float, default=None, help="init_kl_coef (0 skips the reference forward)")
    args = parser.parse_args()
    torch.manual_seed(0)

    cache = Path(__file__).resolve().parent / ".cache"
    videos = write_corpus(cache / "grpo-videos", 6, seed=7000, seconds=20)
    config = SynthConfig(num_frames=6, num_masked=2, num_distractors=2, samples_per_video=4)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "samples"
        video_dir = Path(tmp) / "videos"
        video_dir.mkdir()
        for v in videos:
            (video_dir / v.name).symlink_to(v)
        run_corpus(StoreSettings(), str(video_dir), str(out), config, workers=2)
        storage = Storage(StoreSettings())
        train = load_examples(storage, str(out / "samples.jsonl"))
        model_path = ensure_smol_model() if args.model == "smol" else ensure_tiny_model()
        policy = Policy(model_path)
        params = sum(p.numel() for p in policy.model.parameters())
        reward = start_reward(Path(tmp), "--log-level", "WARNING")
        try:
            client = RewardClient(f"127.0.0.1:{reward.ports['grpc']}")
            recipe = LocalTrainConfig(
                steps=args.steps,
                prompts_per_step=args.prompts,
                n_samples_per_prompt=args.group,
                sft_steps=100 if args.model == "tiny" else 0,
                lr=3e-4 if args.model == "tiny" else LocalTrainConfig.model_fields["lr"].default,
                bf16_update=args.bf16_update,
                **({} if args.kl_coef is None else {"init_kl_coef": args.kl_coef}),
            )
            trainer = LocalTrainer(policy, train, client.score, recipe, storage, str(Path(tmp) / "ckpt"))
            trainer.sft_format()
            trainer.freeze_reference()
            trainer.grpo_step()  # warm-up (encoding cache, allocator)
            logs = [trainer.grpo_step().values for _ in range(args.steps)]
            policy.share_prompt = False  # the reference: each completion runs its own prompt
            reference = [trainer.grpo_step().values for _ in range(args.reference_steps)]
        finally:
            reward.stop()
    step = [v["time_step_s"] for v in logs]
    completions = args.prompts * args.group
    tokens_per_s = [v["response_length"] * completions / v["time_generate_s"] for v in logs]
    ref_step = statistics.median(v["time_step_s"] for v in reference) if reference else None
    result = {
        "bench": "grpo_step",
        "model": "mvp-smol" if args.model == "smol" else "tiny-qwen2.5-vl",
        "params": params,
        "trainable_params": sum(p.numel() for p in trainer.trainable),
        "bf16_update": recipe.bf16_update,
        "init_kl_coef": recipe.init_kl_coef,
        "prompts_per_step": args.prompts,
        "n_samples_per_prompt": args.group,
        "completions_per_step": args.prompts * args.group,
        "seconds_per_step": round(statistics.median(step), 3),
        "generate_s": round(statistics.median(v["time_generate_s"] for v in logs), 3),
        "reward_s": round(statistics.median(v["time_reward_s"] for v in logs), 4),
        "update_s": round(statistics.median(v["time_update_s"] for v in logs), 3),
        "rollout_tokens_per_s": round(statistics.median(tokens_per_s), 1),
        "groups_with_signal": round(statistics.mean(v["groups_with_signal"] for v in logs), 3),
        "reference": "the same loop with the prompt run by every completion (no shared prefill)",
        "reference_seconds_per_step": round(ref_step, 3) if ref_step else None,
        "speedup_vs_reference": round(ref_step / statistics.median(step), 2) if ref_step else None,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    result["peer"] = "benchmarks/trl_grpo.py runs TRL's GRPOTrainer beside this loop on the same samples"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
