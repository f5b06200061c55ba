"""Held-out evaluation before and after training (greedy answers, scored by reward-service), and
the transfer probe on both checkpoints (a task neither trains on)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mvp.pipeline.run import Pipeline


def before(job: Pipeline) -> str:
    return _evaluate(job, "before", job.config.model)


def after(job: Pipeline) -> str:
    return _evaluate(job, "after", job.state.artifacts["checkpoint"])


def _evaluate(job: Pipeline, name: str, model: str) -> str:
    from mvp.trainer.evaluate import write_predictions
    from mvp.trainer.runner import evaluate_checkpoint

    records: list[dict] = []
    result = evaluate_checkpoint(
        model,
        job.samples_uri("heldout"),
        job.state.reward_addr,
        job.state.store,
        job.config.eval_limit,
        predictions=records,
    )
    path = job.out / "report" / f"predictions_{name}.jsonl"
    write_predictions(path, records)
    job.state.evals[name] = result
    job.state.artifacts[f"predictions_{name}"] = str(path)
    return _fmt_eval(result)


def _fmt_eval(result: dict) -> str:
    return (
        f"mean reward {result['mean_reward']:.3f}, exact {result['exact']:.3f} "
        f"(chance {result['chance_exact']:.3f}), format {result['format']:.2f} on {result['samples']} samples"
    )


def transfer(job: Pipeline) -> str:
    from mvp.trainer.transfer import clip_families, probe_checkpoint

    families = clip_families(job.config.transfer_clips, per_source=1)
    for name, model in (("before", job.config.model), ("after", job.state.artifacts["checkpoint"])):
        job.state.transfer[name] = probe_checkpoint(model, families, job.state.store)
    b, a = job.state.transfer["before"], job.state.transfer["after"]
    return (
        f"playback order vs reversed (chance 0.5): {b['accuracy']:.3f} -> {a['accuracy']:.3f} "
        f"on {a['samples']} samples (chose 'forward' {b['chose_forward']:.2f} -> {a['chose_forward']:.2f})"
    )
