"""`mvp`: the one command-line entry point of MVP-Train.

Each component package contributes its subcommand through a module with a
``register(parser)`` function; a component that is not installed (or not built yet) still shows
in ``mvp --help`` and exits non-zero with a clear message when called.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command -> (module providing register(), distribution that ships it, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("mvp.pipeline.cli", "mvp-pipeline", "run the whole MVP pipeline end to end (the main job)"),
    "synth": ("mvp.synth.cli", "mvp-synth-service", "synthesise MVP samples from videos (serve | run | show)"),
    "reward": ("mvp.reward.cli", "mvp-reward-service", "score completions with the MVP reward (serve | score)"),
    "train": ("mvp.trainer.train_cli", "mvp-trainer", "GRPO post-training (local CPU loop or OpenRLHF)"),
    "eval": ("mvp.trainer.eval_cli", "mvp-trainer", "evaluate a checkpoint on held-out MVP samples"),
    "data": ("mvp.synth.data_cli", "mvp-synth-service", "generate the procedural video corpus"),
    "model": ("mvp.model.cli", "mvp-model", "build the Video LLMs; distil, align mvp-smol (build | distill | align)"),
    "serve": ("mvp.inference.cli", "mvp-inference", "serve a Video LLM behind an OpenAI-compatible API"),
    "store": ("mvp.common.store.cli", "mvp-common[store]", "the embedded S3 store; create buckets; upload folders"),
    "health": ("mvp.common.health_cli", "mvp-common", "wait until gRPC servers report SERVING"),
}


def _not_available(command: str, distribution: str, why: str):
    def run(_: argparse.Namespace) -> int:
        print(
            f"mvp {command}: not available yet: {why}. "
            f"It is provided by the '{distribution}' package; `make run` installs every package.",
            file=sys.stderr,
        )
        return 2

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mvp",
        description="MVP-Train: Masked Video Prediction RL post-training of Video LLMs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every flag also reads an MVP_* environment variable; `mvp COMMAND --help` lists them.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command, (module_name, distribution, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(command, help=help_text, description=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise
            sub.set_defaults(func=_not_available(command, distribution, f"{module_name} is not installed"))
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        (parser if args.command is None else parser._subparsers._group_actions[0].choices[args.command]).print_help()  # type: ignore[union-attr]
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
