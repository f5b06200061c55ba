"""Synthesis: one corpus job per sample set on synth-service, through its client, with progress:
the run's level on the training and held-out videos, one more training set per ``extra_train``
config (``train-1``, ``train-2``, ...) and one more held-out set per other level in ``eval_levels``
(``heldout-L2``, ...)."""

from __future__ import annotations

from functools import partial

from mvp.clients import SynthClient
from mvp.common.progress import job_progress, progress
from mvp.common.synth_config import SynthConfig, level_config
from mvp.pipeline.artifacts import Corpus, Role, SampleSet, Services
from mvp.pipeline.context import Context
from mvp.pipeline.supervisor import StageError
from mvp.v1 import synthesis_pb2


def plan(ctx: Context, corpus: Corpus) -> list[tuple[str, Role, SynthConfig, int | None]]:
    """(set name, role, synth config, level) of every set the run makes from its corpus."""
    config = ctx.config
    sets: list[tuple[str, Role, SynthConfig, int | None]] = []
    if "train" in corpus.inputs:
        sets.append(("train", "train", config.synth, config.level))
        sets += [(f"train-{i + 1}", "train", config.extra_synth(i), None) for i in range(len(config.extra_train))]
    if "heldout" in corpus.inputs:
        sets.append(("heldout", "heldout", config.synth, config.level))
        for level in config.eval_levels:
            if level != config.level:
                other = level_config(level, samples_per_video=config.synth.samples_per_video, seed=config.seed)
                sets.append((f"heldout-L{level}", "heldout", other, level))
    return sets


def run(ctx: Context, corpus: Corpus, services: Services) -> tuple[list[SampleSet], str]:
    out: list[SampleSet] = []
    with SynthClient(services.synth_addr) as client:
        for name, role, config, level in plan(ctx, corpus):
            source = corpus.inputs[role]
            output = f"s3://{ctx.config.bucket}/samples/{config.digest()}/{role}"
            bar = progress(desc=f"   synth {name}", unit="video")
            final = client.run_job(
                source, output, config.to_proto(), on_update=partial(_job_update, ctx, bar), timeout=1800
            )
            bar.close()
            if final.state != synthesis_pb2.JOB_STATE_SUCCEEDED:
                raise StageError(f"synthesis job {final.job_id} ({name}) ended {final.state}: {final.error}")
            if final.samples_written == 0:
                raise StageError(f"synthesis of {name} wrote no samples; see {output}/summary.json")
            out.append(
                SampleSet(
                    name=name,
                    role=role,
                    config=config,
                    input=source,
                    output=output,
                    samples=final.samples_written,
                    job_id=final.job_id,
                    videos_ok=final.videos_ok,
                    videos_skipped=final.videos_skipped,
                    videos_failed=final.videos_failed,
                    level=level,
                )
            )
    detail = "; ".join(f"{s.name}: {s.samples} samples from {s.videos_ok} videos ({s.task})" for s in out)
    return out, detail


def _job_update(ctx: Context, bar, status) -> None:
    """Draws a job status (mvp.v1.Job) and lets Ctrl-C / SIGTERM stop the run between updates."""
    ctx.sup.check_interrupted()
    job_progress(bar, status)
