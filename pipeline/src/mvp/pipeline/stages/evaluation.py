"""Held-out evaluation before and after training (greedy answers, scored by reward-service)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mvp.pipeline.run import Pipeline


def before(job: Pipeline) -> str:
    from mvp.trainer.runner import evaluate_checkpoint

    result = evaluate_checkpoint(
        job.config.model,
        job.samples_uri("heldout"),
        job.state.reward_addr,
        job.state.store,
        job.config.eval_limit,
    )
    job.state.evals["before"] = result
    return _fmt_eval(result)


def after(job: Pipeline) -> str:
    from mvp.trainer.runner import evaluate_checkpoint

    result = evaluate_checkpoint(
        job.state.artifacts["checkpoint"],
        job.samples_uri("heldout"),
        job.state.reward_addr,
        job.state.store,
        job.config.eval_limit,
    )
    job.state.evals["after"] = result
    return _fmt_eval(result)


def _fmt_eval(result: dict) -> str:
    return (
        f"mean reward {result['mean_reward']:.3f}, exact {result['exact']:.3f} "
        f"(chance {result['chance_exact']:.3f}), format {result['format']:.2f} on {result['samples']} samples"
    )
