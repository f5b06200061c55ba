"""`mvp eval`: score a checkpoint on held-out MVP samples through the reward-service."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mvp.common.settings import REWARD_ADDR, StoreSettings, add_settings_flags, settings_from_args


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Greedy answers of a checkpoint on held-out MVP samples, scored by the reward-service: mean "
        "reward, exact / selection / ordering, format rate, and the chance level of exact accuracy."
    )
    parser.add_argument("--model", default="smol", help="checkpoint folder or s3:// URI, 'smol' (default) or 'tiny'")
    parser.add_argument("--samples", required=True, help="held-out samples.jsonl (folder path or s3://)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most this many samples")
    parser.add_argument("--reward-addr", default=REWARD_ADDR, help="reward-service host:port")
    parser.add_argument(
        "--predictions",
        type=Path,
        default=None,
        help="also write one JSON line per sample here: id, greedy completion, ground truth, reward components",
    )
    add_settings_flags(parser, StoreSettings)
    parser.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    from mvp.trainer.evaluate import write_predictions
    from mvp.trainer.runner import evaluate_checkpoint

    records: list[dict] = []
    result = evaluate_checkpoint(
        args.model,
        args.samples,
        args.reward_addr,
        settings_from_args(StoreSettings, args),
        args.limit,
        predictions=records,
    )
    if args.predictions:
        write_predictions(args.predictions, records)
    print(json.dumps(result))
    return 0
