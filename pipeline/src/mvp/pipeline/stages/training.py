"""GRPO training (the trainer's local loop; rewards from reward-service over gRPC), resumable."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mvp.pipeline.run import Pipeline


def run(job: Pipeline) -> str:
    from mvp.pipeline.config import run_id
    from mvp.trainer.runner import train_local

    output = f"s3://{job.config.bucket}/checkpoints/{run_id(job.config)}"
    summary = train_local(
        model=job.config.model,
        train_samples=[job.samples_uri(s) for s in job.state.splits if s.split("-")[0] == "train"],
        eval_samples=None,
        output=output,
        logdir=job.out / "train",
        reward_addr=job.state.reward_addr,
        config=job.config.train,
        store=job.state.store,
        resume=True,
        progress=True,
    )
    job.state.artifacts["checkpoint"] = summary["checkpoint"]
    job.state.artifacts["curves"] = summary["curves"]
    job.state.training = summary
    resumed = f", resumed from step {summary['resumed_from_step']}" if summary.get("resumed_from_step") else ""
    budget = " (time budget reached)" if summary.get("stopped_by_time_budget") else ""
    return (
        f"{summary['steps']} GRPO steps in {summary['train_seconds']}s{resumed}{budget}; "
        f"checkpoint {summary['checkpoint']}"
    )
