"""GRPO training (the trainer's local loop; rewards from reward-service over gRPC), resumable. It
trains a copy of the run's base model in memory and keeps the trained policy in ``ctx.models`` for
the final evaluation and the transfer probe (no second load from the checkpoint)."""

from __future__ import annotations

from mvp.common.settings import StoreSettings
from mvp.pipeline.artifacts import Checkpoint, SampleSet, Services
from mvp.pipeline.config import run_id
from mvp.pipeline.context import Context
from mvp.trainer.runner import train_local


def run(ctx: Context, train: list[SampleSet], store: StoreSettings, services: Services) -> tuple[Checkpoint, str]:
    policy = ctx.models.base(store).copy()
    summary = train_local(
        model=ctx.config.model,
        train_samples=[s.uri for s in train],
        eval_samples=None,
        output=f"s3://{ctx.config.bucket}/checkpoints/{run_id(ctx.config)}",
        logdir=ctx.out / "train",
        reward_addr=services.reward_addr,
        config=ctx.config.train,
        store=store,
        resume=True,
        progress=True,
        policy=policy,
    )
    checkpoint = Checkpoint(summary["checkpoint"], summary["steps"], summary["curves"], summary)
    resumed = f", resumed from step {summary['resumed_from_step']}" if summary.get("resumed_from_step") else ""
    budget = " (time budget reached)" if summary.get("stopped_by_time_budget") else ""
    detail = f"{summary['steps']} GRPO steps in {summary['train_seconds']}s{resumed}{budget}"
    ctx.models.trained = policy
    return checkpoint, f"{detail}; checkpoint {checkpoint.uri}"
