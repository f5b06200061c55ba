"""`mvp model`: build the project's Video LLMs and run mvp-smol's own training stages."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mvp.common.settings import add_settings_flags, settings_from_args


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "mvp-smol (the default Video LLM) from the weights that ship in registry packages: `build` assembles "
        "the Hugging Face folder (cached); `distill` and `align` rebuild the committed weights it is made from."
    )
    sub = parser.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)

    build = sub.add_parser("build", help="assemble a model folder (default: mvp-smol, into the cache); print its path")
    build.add_argument("--model", choices=["smol", "tiny"], default="smol", help="which model")
    build.add_argument("--output", type=Path, default=None, help="folder to write (default: the cache, MVP_CACHE_DIR)")
    build.add_argument(
        "--unaligned", action="store_true", help="smol: without the alignment weights (the distilled tower only)"
    )
    build.set_defaults(func=_build)

    from mvp.model.settings import AlignConfig, DistillConfig

    distill = sub.add_parser("distill", help="distil the vision tower from EfficientNet-Lite0 (rewrites weights/)")
    distill.add_argument("--output", type=Path, default=None, help="weights file (default: the committed one)")
    add_settings_flags(distill, DistillConfig)
    distill.set_defaults(func=_distill)

    align = sub.add_parser("align", help="align mvp-smol on frame matching (rewrites weights/align.*)")
    align.add_argument("--output", type=Path, default=None, help="weights file (default: the committed one)")
    add_settings_flags(align, AlignConfig)
    align.set_defaults(func=_align)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _build(args: argparse.Namespace) -> int:
    from mvp.model.weights import WeightsError

    try:
        if args.model == "tiny":
            from mvp.model.tiny import ensure_tiny_model

            path = ensure_tiny_model(args.output)
        elif args.unaligned:
            from mvp.model import smol

            if args.output is None:
                print("mvp model build: --unaligned needs --output", file=sys.stderr)
                return 2
            smol.save(*smol.assemble(align_weights=None), args.output)
            path = args.output
        else:
            from mvp.model.smol import ensure_smol_model

            path = ensure_smol_model(args.output)
    except WeightsError as exc:
        print(f"mvp model build: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _distill(args: argparse.Namespace) -> int:
    from mvp.model import smol
    from mvp.model.distill import DistillConfig, distill

    summary = distill(settings_from_args(DistillConfig, args), args.output or smol.VISION_FILE, log=_log)
    print(json.dumps({k: v for k, v in summary.items() if k != "curve"}))
    return 0


def _align(args: argparse.Namespace) -> int:
    from mvp.model import smol
    from mvp.model.align import AlignConfig, align

    summary = align(settings_from_args(AlignConfig, args), args.output or smol.ALIGN_FILE, log=_log)
    print(json.dumps({k: v for k, v in summary.items() if k != "curve"}))
    return 0
