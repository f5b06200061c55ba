"""`mvp run`: the whole MVP pipeline on one machine (the main job)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the whole MVP pipeline: object store, corpus, synth and reward services, synthesis, "
        "baseline eval, GRPO training, final eval, serving, and a report under OUT/report/. "
        "Everything started is stopped on exit. A re-run with the same arguments reuses the corpus "
        "and samples already in the store."
    )
    parser.add_argument("--input", default=None, help="your videos: folder or s3://bucket/prefix (default: procedural)")
    parser.add_argument("--model", default=None, help="starting model: smol (default), tiny, a folder or s3:// URI")
    parser.add_argument("--videos", type=int, default=None, help="procedural videos to generate (default 24)")
    parser.add_argument("--video-seconds", type=float, default=None, help="length of procedural videos")
    parser.add_argument("--steps", type=int, default=None, help="GRPO training steps")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="working folder (default .mvp)")
    parser.add_argument("--synth-addr", default=None, help="use a running synth-service")
    parser.add_argument("--reward-addr", default=None, help="use a running reward-service")
    parser.add_argument("--keep-serving", action="store_true", default=None, help="leave the model server up")
    parser.add_argument("--config", type=Path, default=None, help="JSON or YAML file with RunConfig fields")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mvp.common.logging import configure_logging
    from mvp.common.settings import LoggingSettings
    from mvp.pipeline.config import RunConfig
    from mvp.pipeline.run import Pipeline

    configure_logging(LoggingSettings(log_format="text", log_level="WARNING"))
    from mvp.common.settings import load_config_file

    values = load_config_file(args.config) if args.config else {}
    for name in (
        "input",
        "model",
        "videos",
        "video_seconds",
        "steps",
        "seed",
        "out",
        "synth_addr",
        "reward_addr",
        "keep_serving",
    ):
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    return Pipeline(RunConfig.model_validate(values)).run()
