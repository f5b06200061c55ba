"""`mvp synth serve | run`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mvp.common.settings import (
    LoggingSettings,
    StoreSettings,
    add_settings_flags,
    load_config_file,
    settings_from_args,
)
from mvp.common.synth_config import SynthConfig
from mvp.synth.settings import SynthServerSettings


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="synth_command", metavar="SUBCOMMAND", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the synthesis gRPC service",
        description="Serve mvp.v1.SynthesisService: single videos and resumable corpus jobs over S3/MinIO.",
    )
    add_settings_flags(serve, SynthServerSettings)
    add_settings_flags(serve, StoreSettings)
    add_settings_flags(serve, LoggingSettings)
    serve.set_defaults(func=_serve)

    run = sub.add_parser(
        "run",
        help="synthesise a corpus without a server",
        description="Turn every video under --input (folder or s3://bucket/prefix) into MVP samples under "
        "--output, with a progress bar. Writes summary.json, samples.jsonl and openrlhf.jsonl. "
        "Re-running resumes: committed videos are not redone. Exits 0 when the run completed, even if "
        "some videos failed (see summary.json).",
    )
    run.add_argument("--input", required=True, help="folder or s3://bucket/prefix of videos")
    run.add_argument("--output", required=True, help="folder or s3://bucket/prefix for samples")
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: SynthServerSettings.workers, env MVP_SYNTH_WORKERS)",
    )
    run.add_argument(
        "--synth-addr",
        default=None,
        help="run the corpus as a job on this synth-service (host:port) and follow it, instead of in "
        "this process; the service reads and writes the store with its own credentials",
    )
    run.add_argument("--config", type=Path, default=None, help="JSON/YAML file with SynthConfig fields")
    add_settings_flags(run, SynthConfig)
    add_settings_flags(run, StoreSettings)
    run.set_defaults(func=_run)

    show = sub.add_parser(
        "show",
        help="render one sample as a PNG sheet",
        description="Render the sample SAMPLE_ID from a samples.jsonl (local or s3://) as a PNG: context "
        "frames with the gap, the numbered candidate pool, the ground truth and optionally an answer.",
    )
    show.add_argument("sample_id")
    show.add_argument("--samples", required=True, help="samples.jsonl written by `mvp synth run` or a job")
    show.add_argument("--out", type=Path, default=None, help="PNG path (default: <sample_id>.png)")
    show.add_argument("--answer", default=None, help="a model answer to mark, e.g. '3,1,2'")
    add_settings_flags(show, StoreSettings)
    show.set_defaults(func=_show)


def load_config(path: Path | None, args: argparse.Namespace) -> SynthConfig:
    return settings_from_args(SynthConfig, args, base=load_config_file(path) if path is not None else {})


def _serve(args: argparse.Namespace) -> int:
    from mvp.common.logging import configure_logging
    from mvp.synth.service import main

    configure_logging(settings_from_args(LoggingSettings, args))
    main(settings_from_args(SynthServerSettings, args), settings_from_args(StoreSettings, args))
    return 0


def _run(args: argparse.Namespace) -> int:
    from mvp.common.logging import configure_logging
    from mvp.common.progress import progress as progress_bar
    from mvp.common.settings import LoggingSettings as Log
    from mvp.synth.corpus import CorpusError, run_corpus, status_name

    configure_logging(Log(log_format="text", log_level="WARNING"))
    try:
        config = load_config(args.config, args)
    except ValueError as exc:
        print(f"mvp synth run: invalid config: {exc}", file=sys.stderr)
        return 2
    if args.synth_addr:
        return _run_remote(args, config)
    bar = progress_bar(total=0, unit="video", desc="synthesising")

    def on_total(total: int) -> None:
        bar.total = total
        bar.refresh()

    def on_result(result, progress, fresh):
        bar.update(1)
        bar.set_postfix(
            samples=progress.samples, failed=sum(1 for r in progress.results if status_name(r.status) != "ok")
        )

    try:
        progress = run_corpus(
            settings_from_args(StoreSettings, args),
            args.input,
            args.output,
            config,
            workers=args.workers or SynthServerSettings().workers,
            on_result=on_result,
            on_total=on_total,
        )
    except CorpusError as exc:
        bar.close()
        print(f"mvp synth run: {exc}", file=sys.stderr)
        return 1
    bar.close()
    counts: dict[str, int] = {}
    for result in progress.results:
        counts[status_name(result.status)] = counts.get(status_name(result.status), 0) + 1
    print(json.dumps({"videos": progress.total, **counts, "samples": progress.samples, "output": args.output}))
    return 0


def _run_remote(args: argparse.Namespace, config) -> int:
    from functools import partial

    from mvp.clients import SynthClient
    from mvp.clients.channel import ServiceUnavailableError
    from mvp.common.progress import job_progress, progress
    from mvp.v1 import synthesis_pb2

    bar = progress(unit="video", desc=f"synthesising on {args.synth_addr}")
    try:
        with SynthClient(args.synth_addr) as client:
            job = client.run_job(args.input, args.output, config.to_proto(), on_update=partial(job_progress, bar))
    except ServiceUnavailableError as exc:
        bar.close()
        print(f"mvp synth run: {exc}", file=sys.stderr)
        return 1
    bar.close()
    summary = {
        "job_id": job.job_id,
        "state": synthesis_pb2.JobState.Name(job.state),
        "videos": job.videos_total,
        "ok": job.videos_ok,
        "skipped": job.videos_skipped,
        "failed": job.videos_failed,
        "samples": job.samples_written,
        "output": args.output,
    }
    print(json.dumps(summary))
    if job.state != synthesis_pb2.JOB_STATE_SUCCEEDED:
        print(f"mvp synth run: job {job.job_id} ended {summary['state']}: {job.error}", file=sys.stderr)
        return 1
    return 0


def _show(args: argparse.Namespace) -> int:
    from mvp.common.sheet import render_sheet
    from mvp.common.storage import Storage, StorageError

    storage = Storage(settings_from_args(StoreSettings, args))
    try:
        lines = storage.get_bytes(args.samples).decode().splitlines()
    except StorageError as exc:
        print(f"mvp synth show: cannot read {args.samples}: {exc}", file=sys.stderr)
        return 1
    sample = next((json.loads(x) for x in lines if json.loads(x)["id"] == args.sample_id), None)
    if sample is None:
        print(f"mvp synth show: no sample {args.sample_id!r} in {args.samples}", file=sys.stderr)
        return 1
    answer = [int(x) for x in args.answer.replace(" ", "").split(",")] if args.answer else None
    out = args.out or Path(f"{args.sample_id}.png")
    out.write_bytes(render_sheet(sample, storage.get_bytes, answer))
    print(out)
    return 0
