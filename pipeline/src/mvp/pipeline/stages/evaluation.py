"""Held-out evaluation before and after training (greedy answers, scored by reward-service), and
the transfer probe on both checkpoints (a task neither trains on)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mvp.pipeline.run import Pipeline


def before(job: Pipeline) -> str:
    return _evaluate(job, "before", job.config.model)


def after(job: Pipeline) -> str:
    detail = _evaluate(job, "after", job.state.artifacts["checkpoint"])
    from mvp.trainer.stats import paired_difference, per_sample

    for task in _tasks(job):
        rows = {n: _rows(job, _name(job, n, task)) for n in ("before", "after")}
        if rows["before"] and rows["after"]:
            job.state.gains[task] = {
                key: paired_difference(per_sample(rows["after"], key), per_sample(rows["before"], key))
                for key in ("exact", "reward")
            }
    return detail


def _tasks(job: Pipeline) -> dict[str, str]:
    """{task name: held-out samples}: the run's level first, then the other levels measured."""
    return {
        f"level {info.get('level', job.config.level)}": job.samples_uri(split)
        for split, info in job.state.splits.items()
        if split.split("-")[0] == "heldout"
    }


def _name(job: Pipeline, checkpoint: str, task: str) -> str:
    """The run's own level is plain "before"/"after"; other levels carry theirs."""
    return checkpoint if task == f"level {job.config.level}" else f"{checkpoint} ({task})"


def _rows(job: Pipeline, name: str) -> list[dict]:
    import json
    from pathlib import Path

    path = job.state.artifacts.get(f"predictions_{name}")
    return [json.loads(x) for x in Path(path).read_text().splitlines()] if path else []


def _evaluate(job: Pipeline, checkpoint: str, model: str) -> str:
    """Every held-out task on ``model``, loaded once; the run's own level with the content-dependence
    diagnostic."""
    from mvp.trainer.evaluate import write_predictions
    from mvp.trainer.runner import evaluate_checkpoint

    tasks = _tasks(job)
    records: dict[str, list[dict]] = {}
    results = evaluate_checkpoint(
        model,
        tasks,
        job.state.reward_addr,
        job.state.store,
        job.config.eval_limit,
        max_new_tokens=job.config.train.max_new_tokens,  # the budget the model trains with
        predictions=records,
        diagnostics=True,
    )
    parts = []
    for task, result in results.items():
        name = _name(job, checkpoint, task)
        path = job.out / "report" / f"predictions_{name.replace(' ', '_').replace('(', '').replace(')', '')}.jsonl"
        write_predictions(path, records[task])
        job.state.evals[name] = {"task": task, **result}
        job.state.artifacts[f"predictions_{name}"] = str(path)
        parts.append(f"{task}: {_fmt_eval(result)}")
    return "; ".join(parts)


def _fmt_eval(result: dict) -> str:
    low, high = result["exact_ci"]
    return (
        f"mean reward {result['mean_reward']:.3f}, exact {result['exact']:.3f} [{low:.3f}, {high:.3f}] "
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
