"""A diagnostic ceiling for the learning proof: how far does *supervised* fine-tuning on MVP's own
answers take a model, on the same training prompts GRPO gets and the same held-out samples?

A label names the right frames in the right order for every prompt, far more information per
prompt than GRPO's reward on a few sampled answers; if the labels cannot lift held-out exact over
the proof's bar, neither the reward, its credit assignment nor more GRPO steps on these prompts
will, and the limit is the model or the amount of data. This is not a training recipe: the proof
is GRPO only and mvp-smol's alignment never sees MVP answers; nothing here is saved.

Trains the parameters GRPO trains (``select_trainable`` with the local trainer's defaults) with
cross-entropy on the answer tokens, under bf16 autocast, and evaluates greedily after every epoch,
splitting each answer by place (slot 1 = the first masked frame, slot 2 = the second, ...).

    python benchmarks/research/label_ceiling.py --model FOLDER \\
        --train-samples s3://mvp/samples/<digest>/train/samples.jsonl \\
        --eval-samples s3://mvp/samples/<digest>/heldout/samples.jsonl --reward-addr 127.0.0.1:50052

(with MVP_S3_ENDPOINT pointing at the store). Last line: JSON with every evaluation, the best
epoch's exact, and its ratio to the starting model's exact.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def slot_accuracy(records: list[dict]) -> dict[str, float]:
    """From ``evaluate``'s per-sample records: per place, the share answering the right frame there;
    and how many samples name every masked frame (in any order)."""
    from mvp.common.sample import parse_answer

    k = max((len(r["ground_truth"]) for r in records), default=0)
    hits = [0] * k
    all_selected = 0
    for r in records:
        truth = r["ground_truth"]
        parsed = parse_answer(r["completion"], len(truth), r["num_candidates"])
        answer = [] if parsed.failure_reason else parsed.indices
        for place, (a, t) in enumerate(zip(answer, truth, strict=False)):
            hits[place] += a == t
        all_selected += sorted(answer) == sorted(truth)
    n = max(1, len(records))
    return {**{f"slot_{p + 1}": h / n for p, h in enumerate(hits)}, "all_selected": all_selected}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder, s3:// checkpoint, 'smol' or 'tiny'")
    parser.add_argument("--train-samples", required=True)
    parser.add_argument("--eval-samples", required=True)
    parser.add_argument("--reward-addr", default="127.0.0.1:50052")
    parser.add_argument("--eval-limit", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from mvp.clients import RewardClient
    from mvp.common.storage import Storage
    from mvp.model.policy import Policy
    from mvp.model.resolve import resolve_model
    from mvp.trainer.config import LocalTrainConfig
    from mvp.trainer.data import load_examples
    from mvp.trainer.evaluate import chance_exact, evaluate
    from mvp.trainer.local import select_trainable
    from mvp.trainer.supervised import supervised_epoch

    torch.manual_seed(args.seed)
    storage = Storage()
    policy = Policy(resolve_model(args.model, storage, Path(__file__).resolve().parent / ".cache"))
    train = load_examples(storage, args.train_samples)
    held = load_examples(storage, args.eval_samples, limit=args.eval_limit)
    client = RewardClient(args.reward_addr)
    cache: dict = {}

    def encoded(ex):
        if ex.id not in cache:
            cache[ex.id] = policy.encode(ex.prompt, ex.images)
        return cache[ex.id]

    def measure(epoch: int, seconds: float, loss: float | None) -> dict:
        records: list[dict] = []
        m = evaluate(policy, held, client.score, encoded=encoded, predictions=records)
        row = {
            "epoch": epoch,
            "seconds": round(seconds, 1),
            "train_loss": loss,
            "exact": m["exact"],
            "selection": m["selection"],
            **slot_accuracy(records),
        }
        print(json.dumps(row), flush=True)
        return row

    trainable = select_trainable(policy.model, LocalTrainConfig())
    optimizer = torch.optim.AdamW(trainable, lr=args.lr)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    rows = [measure(0, 0.0, None)]
    for epoch in range(1, args.epochs + 1):
        loss = supervised_epoch(policy, train, optimizer, trainable, args.batch, encoded, rng)
        rows.append(measure(epoch, time.perf_counter() - t0, round(loss, 4)))
    best = max(rows[1:], key=lambda r: r["exact"], default=rows[0])
    print(
        json.dumps(
            {
                "bench": "label_ceiling",
                "model": args.model,
                "train_samples": len(train),
                "held_out_samples": len(held),
                "chance_exact": chance_exact(held),
                "before_exact": rows[0]["exact"],
                "best_exact": best["exact"],
                "best_epoch": best["epoch"],
                "ratio_best_to_before": round(best["exact"] / rows[0]["exact"], 3) if rows[0]["exact"] else None,
                "evaluations": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
