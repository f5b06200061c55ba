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
    from mvp.common.settings import add_settings_flags
    from mvp.pipeline.config import RunConfig

    add_settings_flags(parser, RunConfig, skip={"train", "synth", "extra_train"})
    parser.add_argument("--config", type=Path, default=None, help="JSON or YAML file with RunConfig fields")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mvp.common.logging import configure_logging
    from mvp.common.settings import LoggingSettings
    from mvp.pipeline.config import RunConfig
    from mvp.pipeline.run import Pipeline

    configure_logging(LoggingSettings(log_format="text", log_level="WARNING"))
    from mvp.common.settings import load_config_file, settings_from_args

    values = load_config_file(args.config) if args.config else {}
    return Pipeline(settings_from_args(RunConfig, args, base=values)).run()
