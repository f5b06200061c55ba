"""The transfer probe (``mvp.trainer.transfer``: "are these frames in playback order or reversed?",
never trained on; issue #17 item 6) on several models in one run, with more clips than `mvp run`'s
report uses.

Compares models in one run (the first is the reference of the ratio):

    python benchmarks/research/transfer_probe.py --models smol .mvp-learning/main/store/mvp/checkpoints/<id>/step-NNNNNN

The last line is JSON: per model, accuracy on each clip family, the answer bias, and the ratio of
the overall accuracy to the first model's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smol"], help="'smol', 'tiny', folders or s3:// URIs")
    parser.add_argument("--procedural", type=int, default=24, help="unseen procedural clips")
    parser.add_argument("--per-source", type=int, default=3, help="clips per FFmpeg test source")
    args = parser.parse_args()
    from mvp.trainer.transfer import TASK, clip_families, probe_checkpoint

    torch.manual_seed(0)
    t0 = time.perf_counter()
    families = clip_families(args.procedural, args.per_source)
    results = [probe_checkpoint(m, families) for m in args.models]
    for r in results:
        print(
            f"{r['model']}: choice accuracy {r['accuracy']:.3f} (procedural {r['procedural_choice_accuracy']:.3f}, "
            f"ffmpeg {r['ffmpeg_choice_accuracy']:.3f}; chose 'forward' {r['chose_forward']:.2f}); greedy "
            f"{r['greedy_accuracy']:.3f} (well formed {r['well_formed']:.2f})",
            file=sys.stderr,
        )
    reference = results[0]["accuracy"]
    print(
        json.dumps(
            {
                "bench": "transfer_probe",
                "task": TASK,
                "chance": 0.5,
                "results": results,
                "ratio_to_first": [round(r["accuracy"] / reference, 3) if reference else None for r in results],
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
