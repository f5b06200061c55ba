"""Held-out evaluation of one model on every held-out set (greedy answers scored by reward-service,
with the content-dependence diagnostic), the paired after - before of each task, and the transfer
probe on both models (a task neither trains on)."""

from __future__ import annotations

from typing import Literal

from mvp.common.settings import StoreSettings
from mvp.model.policy import Policy
from mvp.pipeline.artifacts import Evaluation, Gain, SampleSet, Services
from mvp.pipeline.context import Context
from mvp.trainer.evaluate import write_predictions
from mvp.trainer.runner import evaluate_tasks
from mvp.trainer.stats import paired_difference, per_sample
from mvp.trainer.transfer import clip_families, probe


def task_name(ctx: Context, sample_set: SampleSet) -> str:
    return f"level {sample_set.level if sample_set.level is not None else ctx.config.level}"


def run(
    ctx: Context,
    checkpoint: Literal["before", "after"],
    policy: Policy,
    heldout: list[SampleSet],
    store: StoreSettings,
    services: Services,
) -> tuple[list[Evaluation], str]:
    """``policy`` on every held-out set (the run's level first), with the training's generation budget."""
    tasks = {task_name(ctx, s): s.uri for s in heldout}
    rows: dict[str, list[dict]] = {}
    results = evaluate_tasks(
        policy,
        tasks,
        services.reward_addr,
        store,
        ctx.config.eval_limit,
        max_new_tokens=ctx.config.train.max_new_tokens,  # the budget the model trains with
        predictions=rows,
        diagnostics=True,
    )
    out = []
    for s in heldout:
        task = task_name(ctx, s)
        name = checkpoint if s.name == "heldout" else f"{checkpoint} ({task})"
        path = ctx.out / "report" / f"predictions_{name.replace(' ', '_').replace('(', '').replace(')', '')}.jsonl"
        write_predictions(path, rows[task])
        out.append(Evaluation(checkpoint, task, name, results[task], rows[task], path))
    return out, "; ".join(f"{e.task}: {_fmt(e.metrics)}" for e in out)


def gains(before: list[Evaluation], after: list[Evaluation]) -> list[Gain]:
    """Paired after - before (exact, reward) of every task both evaluated."""
    start = {e.task: e for e in before}
    return [
        Gain(
            e.task,
            *(
                paired_difference(per_sample(e.rows, key), per_sample(start[e.task].rows, key))
                for key in ("exact", "reward")
            ),
        )
        for e in after
        if e.task in start and e.rows and start[e.task].rows
    ]


def _fmt(result: dict) -> str:
    low, high = result["exact_ci"]
    return (
        f"mean reward {result['mean_reward']:.3f}, exact {result['exact']:.3f} [{low:.3f}, {high:.3f}] "
        f"(chance {result['chance_exact']:.3f}), format {result['format']:.2f} on {result['samples']} samples"
    )


def transfer(ctx: Context, before: Policy, after: Policy, checkpoint: str) -> tuple[dict[str, dict], str]:
    """The transfer probe on the base and the trained model (the same clips for both)."""
    families = clip_families(ctx.config.transfer_clips, per_source=1)
    results = {
        "before": {"model": ctx.config.model, **probe(before, families)},
        "after": {"model": checkpoint, **probe(after, families)},
    }
    b, a = results["before"], results["after"]
    return results, (
        f"playback order vs reversed (chance 0.5): {b['accuracy']:.3f} -> {a['accuracy']:.3f} "
        f"on {a['samples']} samples (chose 'forward' {b['chose_forward']:.2f} -> {a['chose_forward']:.2f})"
    )
