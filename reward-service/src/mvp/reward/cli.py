"""`mvp reward serve | score | reward-func-path`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from mvp.common.settings import LoggingSettings, add_settings_flags, settings_from_args


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="reward_command", metavar="SUBCOMMAND", required=True)

    from mvp.reward.settings import RewardServerSettings

    serve = sub.add_parser(
        "serve",
        help="run the reward gRPC service (+ OpenRLHF HTTP endpoint)",
        description="Serve mvp.v1.RewardService over gRPC, and OpenRLHF's remote-reward protocol "
        "over HTTP (POST /score), from one process.",
    )
    add_settings_flags(serve, RewardServerSettings)
    add_settings_flags(serve, LoggingSettings)
    serve.set_defaults(func=_serve)

    score = sub.add_parser(
        "score",
        help="score JSON lines offline",
        description='Read {"completion": str, "label": str} JSON lines on stdin; write one JSON line per '
        'input with "reward", "components" (and "reason" when the completion did not parse), or '
        '"error" for a malformed line. In-process by default; --addr scores through a running service.',
    )
    score.add_argument("--addr", default=None, help="host:port of a reward-service (default: score in-process)")
    score.add_argument("--input", type=Path, default=None, help="read this file instead of stdin")
    score.add_argument("--soft", action="store_true", help="enable the soft (gap-adjacent) credit")
    score.add_argument("--timeout-s", type=float, default=30.0, help="deadline per call with --addr")
    score.set_defaults(func=_score)

    path = sub.add_parser(
        "reward-func-path",
        help="print the path of the OpenRLHF reward_func file",
        description="Print the path of reward_func.py, for OpenRLHF's --reward.remote_url PATH.py.",
    )
    path.set_defaults(func=lambda _: print(Path(__file__).with_name("reward_func.py")) or 0)


def _serve(args: argparse.Namespace) -> int:
    from mvp.common.logging import configure_logging
    from mvp.reward.service import main
    from mvp.reward.settings import RewardServerSettings

    configure_logging(settings_from_args(LoggingSettings, args))
    main(settings_from_args(RewardServerSettings, args))
    return 0


def _score(args: argparse.Namespace) -> int:
    stream: TextIO = args.input.open(encoding="utf-8") if args.input else sys.stdin
    try:
        if args.addr:
            _score_remote(stream, sys.stdout, args.addr, soft=args.soft, timeout_s=args.timeout_s)
        else:
            _score_local(stream, sys.stdout, soft=args.soft)
    finally:
        if args.input:
            stream.close()
    return 0


def _read(line: str) -> tuple[str, str]:
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("line must be a JSON object")
    completion, label = obj.get("completion"), obj.get("label")
    if not isinstance(completion, str):
        raise ValueError("'completion' must be a string")
    if isinstance(label, dict):
        label = json.dumps(label)
    if not isinstance(label, str):
        raise ValueError("'label' must be a JSON string (as in openrlhf.jsonl)")
    return completion, label


def _emit(out: TextIO, reward: float, components: dict[str, float], reason: str, detail: str) -> None:
    row: dict[str, object] = {"reward": reward, "components": components}
    if reason:
        row["reason"] = reason
        row["detail"] = detail
    out.write(json.dumps(row) + "\n")


def _score_local(stream: TextIO, out: TextIO, *, soft: bool) -> None:
    from mvp.reward import core

    config = core.RewardConfig(soft=soft)
    for line in stream:
        if not line.strip():
            continue
        try:
            completion, label_json = _read(line)
            label = core.Label.from_json(label_json)
        except ValueError as exc:
            out.write(json.dumps({"error": str(exc)}) + "\n")
            continue
        r = core.score(completion, label, config)
        _emit(out, r.reward, r.components(), r.failure_reason, r.failure_detail)


def _score_remote(stream: TextIO, out: TextIO, addr: str, *, soft: bool, timeout_s: float) -> None:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from mvp.clients import ClientConfig, RewardClient
    from mvp.v1 import reward_pb2

    config = reward_pb2.RewardConfig(soft=True) if soft else None
    with RewardClient(ClientConfig(target=addr, timeout_s=timeout_s)) as client:
        for line in stream:
            if not line.strip():
                continue
            try:
                completion, label_json = _read(line)
            except ValueError as exc:
                out.write(json.dumps({"error": str(exc)}) + "\n")
                continue
            try:
                (r,) = client.score([completion], [label_json], config)
            except grpc.RpcError as exc:  # an invalid label is reported on its own line
                out.write(json.dumps({"error": exc.details()}) + "\n")
                continue
            components = MessageToDict(r.components, always_print_fields_with_no_presence=True)
            _emit(out, r.reward, components, r.failure_reason, r.failure_detail)
