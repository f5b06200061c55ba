"""`mvp train`: GRPO post-training with MVP (local CPU loop; OpenRLHF on clusters)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mvp.common.settings import REWARD_ADDR, StoreSettings, add_settings_flags, settings_from_args
from mvp.trainer.config import LocalTrainConfig


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "GRPO post-training with the MVP reward. --backend local runs the loop in PyTorch on this "
        "machine (rollouts with transformers, rewards from reward-service over gRPC, checkpoints to "
        "the store, resumable). --backend openrlhf launches OpenRLHF on a Ray cluster."
    )
    parser.add_argument("--backend", choices=["local", "openrlhf"], default="local")
    parser.add_argument(
        "--model",
        default="smol",
        help="checkpoint folder or s3:// URI; 'smol' (default): mvp-smol; 'tiny': the random-init test fixture",
    )
    parser.add_argument("--train-samples", help="samples.jsonl of the training split (folder path or s3://)")
    parser.add_argument("--eval-samples", default=None, help="samples.jsonl of the held-out split")
    parser.add_argument("--eval-limit", type=int, default=64, help="held-out samples evaluated")
    parser.add_argument("--output", help="where checkpoints go (folder or s3://bucket/prefix)")
    parser.add_argument("--logdir", type=Path, default=Path(".mvp/train"), help="TensorBoard events, curves.png")
    parser.add_argument("--reward-addr", default=REWARD_ADDR, help="reward-service host:port")
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from the latest checkpoint under --output (default on)",
    )
    parser.add_argument("--config", type=Path, default=None, help="recipe file (openrlhf backend)")
    parser.add_argument("--dry-run", action="store_true", help="openrlhf: print the command, do not submit")
    parser.add_argument(
        "--launch",
        choices=["ray-submit", "exec"],
        default="ray-submit",
        help="openrlhf: 'ray-submit' sends the run to the recipe's Ray cluster with `ray job submit`; 'exec' "
        "runs OpenRLHF in this process's environment, for a driver that is already a Ray job (KubeRay "
        "RayJob entrypoint); --staging must then be on storage every Ray node mounts",
    )
    parser.add_argument(
        "--staging",
        type=Path,
        default=Path(".mvp/openrlhf-job"),
        help="openrlhf: folder for the staged dataset (shipped to the cluster as working_dir)",
    )
    add_settings_flags(parser, LocalTrainConfig)
    add_settings_flags(parser, StoreSettings)
    parser.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    if args.backend == "openrlhf":
        return _openrlhf(args)
    if not args.train_samples or not args.output:
        print("mvp train: --train-samples and --output are required for the local backend", file=sys.stderr)
        return 2
    from mvp.trainer.runner import train_local

    summary = train_local(
        model=args.model,
        train_samples=args.train_samples,
        eval_samples=args.eval_samples,
        eval_limit=args.eval_limit,
        output=args.output,
        logdir=args.logdir,
        reward_addr=args.reward_addr,
        config=settings_from_args(LocalTrainConfig, args),
        store=settings_from_args(StoreSettings, args),
        resume=args.resume,
        progress=True,
    )
    print(json.dumps(summary))
    return 0


def _openrlhf(args: argparse.Namespace) -> int:
    from mvp.common.storage import Storage
    from mvp.trainer.openrlhf_launch import Recipe, RecipeError, launch

    if args.config is None:
        print("mvp train --backend openrlhf: --config RECIPE.yaml is required (see trainer/recipes/)", file=sys.stderr)
        return 2
    try:
        recipe = Recipe.load(args.config)
        command = launch(
            recipe, Storage(settings_from_args(StoreSettings, args)), args.staging, args.dry_run, mode=args.launch
        )
    except (RecipeError, ValueError) as exc:
        print(f"mvp train --backend openrlhf: {exc}", file=sys.stderr)
        return 2
    print(command)
    return 0
