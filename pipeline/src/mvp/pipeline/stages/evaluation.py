"""Held-out evaluation before and after training (greedy answers, scored by reward-service)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mvp.pipeline.run import Pipeline


def before(job: Pipeline) -> str:
    return _evaluate(job, "before", job.config.model)


def after(job: Pipeline) -> str:
    return _evaluate(job, "after", job.state.artifacts["checkpoint"])


def _evaluate(job: Pipeline, name: str, model: str) -> str:
    from mvp.trainer.runner import evaluate_checkpoint

    result = evaluate_checkpoint(
        model, job.samples_uri("heldout"), job.state.reward_addr, job.state.store, job.config.eval_limit
    )
    job.state.evals[name] = result
    return _fmt_eval(result)


def _fmt_eval(result: dict) -> str:
    return (
        f"mean reward {result['mean_reward']:.3f}, exact {result['exact']:.3f} "
        f"(chance {result['chance_exact']:.3f}), format {result['format']:.2f} on {result['samples']} samples"
    )
