"""Synthesis: one corpus job per split on synth-service, through its client, with progress (plus
one per ``extra_train`` config on the training videos: splits ``train-1``, ``train-2``, ...)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mvp.pipeline.run import Pipeline


def run(job: Pipeline) -> str:
    from mvp.clients import SynthClient
    from mvp.common.progress import progress
    from mvp.pipeline.supervisor import StageError
    from mvp.v1 import synthesis_pb2

    # extra_train: more training sets from the training videos, each with its own synth config;
    # eval_levels: more held-out sets from the held-out videos, one per other MVP level
    splits = job.state.splits
    if "train" in splits:
        for i in range(len(job.config.extra_train)):
            splits[f"train-{i + 1}"] = {"input": splits["train"]["input"], "extra": i}
    if "heldout" in splits:
        for level in job.config.eval_levels:
            if level != job.config.level:
                splits[f"heldout-L{level}"] = {"input": splits["heldout"]["input"], "level": level}
    parts = []
    with SynthClient(job.state.synth_addr) as client:
        for split, info in splits.items():
            config = _config(job, info)
            output = f"s3://{job.config.bucket}/samples/{config.digest()}/{split.split('-')[0]}"
            bar = progress(desc=f"   synth {split}", unit="video")
            final = client.run_job(
                info["input"], output, config.to_proto(), on_update=partial(_job_update, job, bar), timeout=1800
            )
            bar.close()
            if final.state != synthesis_pb2.JOB_STATE_SUCCEEDED:
                raise StageError(f"synthesis job {final.job_id} ({split}) ended {final.state}: {final.error}")
            if final.samples_written == 0:
                raise StageError(f"synthesis of {split} wrote no samples; see {output}/summary.json")
            info.update(
                output=output,
                samples=final.samples_written,
                job_id=final.job_id,
                ok=final.videos_ok,
                skipped=final.videos_skipped,
                failed=final.videos_failed,
            )
            info["task"] = f"N={config.num_frames}, K={config.num_masked}, l={config.num_distractors}"
            parts.append(f"{split}: {final.samples_written} samples from {final.videos_ok} videos ({info['task']})")
    return "; ".join(parts)


def _config(job: Pipeline, info: dict):
    """The synth config of one split: the run's, an extra training set's, or another level's."""
    from mvp.common.synth_config import level_config

    if "extra" in info:
        return job.config.extra_synth(info["extra"])
    if "level" in info:
        return level_config(info["level"], samples_per_video=job.config.synth.samples_per_video, seed=job.config.seed)
    return job.config.synth


def _job_update(job: Pipeline, bar, status) -> None:
    """Draws a job status (mvp.v1.Job) and lets Ctrl-C / SIGTERM stop the run between updates."""
    from mvp.common.progress import job_progress

    job.sup.check_interrupted()
    job_progress(bar, status)
