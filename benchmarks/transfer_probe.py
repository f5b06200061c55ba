"""A held-out probe no model here ever trains on: "are these frames in playback order or reversed?"
(issue #17 item 6, the paper's transfer claim in miniature). Each clip gives two samples, its four
frames forward and reversed, so a model that always answers the same scores exactly 0.5.

Scored two ways: **choice** (the default headline): the model's log-likelihood of the two answers
``<answer>1</answer>`` and ``<answer>2</answer>``, the likelier one is its choice (as LMMs-Eval scores
multiple choice; independent of whether the model follows this prompt's one-index format), and
**greedy**: its free answer, parsed (a wrong format counts as wrong; ``well_formed`` says how often).

Clips: unseen procedural videos (seeds far from every corpus, distillation and alignment) and
"real" clips rendered by FFmpeg's own test sources (testsrc2, mandelbrot, life, cellauto: moving
content not drawn by our generator), decoded with PyAV like any video.

Compares models in one run (the first is the reference of the ratio):

    python benchmarks/transfer_probe.py --models smol .mvp-learning/main/store/mvp/checkpoints/<id>/step-NNNNNN

The last line is JSON: per model, accuracy on each clip family, the answer bias, and the ratio of
the overall accuracy to the first model's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROBE_SEED_OFFSET = 9_000_000  # corpora use seeds from 0, the model's stages from 7,000,000
FFMPEG_SOURCES = {
    "testsrc2": "testsrc2=size=320x180:rate=25",
    "mandelbrot": "mandelbrot=size=320x180:rate=25",
    "life": "life=size=320x180:rate=25:mold=10:ratio=0.3:death_color=#C83232:life_color=#00ff00",
    "cellauto": "cellauto=size=320x180:rate=25:rule=110",
}
PROMPT = (
    "These 4 frames come from one video:\n"
    + "".join(f"Frame {i}: <image>\n" for i in range(1, 5))
    + "Are they shown in playback order, or reversed? Answer <answer>1</answer> if in playback order, "
    "<answer>2</answer> if reversed."
)


def procedural_clips(count: int) -> list[list[np.ndarray]]:
    from mvp.common.procedural import VideoSpec, render_frames

    clips = []
    for i in range(count):
        frames = [
            f for j, f in enumerate(render_frames(VideoSpec(seed=PROBE_SEED_OFFSET + i, seconds=8))) if j % 50 == 0
        ]
        clips.append(frames[:4])
    return clips


def ffmpeg_clips(per_source: int) -> list[list[np.ndarray]]:
    """Four frames 2 s apart from each FFmpeg test source, at several start times."""
    import av

    clips = []
    for source in FFMPEG_SOURCES.values():
        for k in range(per_source):
            start = 1.0 + 3.0 * k
            graph = f"{source},trim=duration={start + 8:g}"
            with av.open(graph, format="lavfi") as container:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            picks = [int((start + 2 * j) * 25) for j in range(4)]
            clips.append([frames[min(p, len(frames) - 1)] for p in picks])
    return clips


def evaluate(model: str, families: dict[str, list[list[np.ndarray]]]) -> dict:
    import torch
    from PIL import Image

    from mvp.common.sample import parse_answer
    from mvp.common.storage import Storage
    from mvp.model.policy import Policy
    from mvp.model.resolve import resolve_model

    policy = Policy(resolve_model(model, Storage(), Path("/tmp/mvp-probe-cache")))
    policy.model.eval()
    options = [
        policy.tokenizer(f"<answer>{i}</answer><|im_end|>", add_special_tokens=False, return_tensors="pt")["input_ids"][
            0
        ]
        for i in (1, 2)
    ]
    width = max(len(o) for o in options)
    padded = torch.stack([torch.cat([o, o.new_full((width - len(o),), policy.pad_id)]) for o in options])
    lengths = [len(o) for o in options]
    out: dict = {"model": model}
    choices_all, answers_all, choice_ok, greedy_ok = [], [], [], []
    for family, clips in families.items():
        fam_choice, fam_greedy = [], []
        for clip in clips:
            for truth, frames in ((1, clip), (2, clip[::-1])):
                enc = policy.encode(PROMPT, [Image.fromarray(f) for f in frames])
                with torch.no_grad():
                    logp, _ = policy.token_logprobs(enc, padded)
                scores = [float(logp[i, : lengths[i]].sum()) for i in range(2)]
                choice = 1 + int(scores[1] > scores[0])
                text = policy.decode(policy.sample(enc, 1, 12, 1.0, greedy=True))[0]
                parsed = parse_answer(text, 1, 2)
                answer = parsed.indices[0] if not parsed.failure_reason else None
                choices_all.append(choice)
                answers_all.append(answer)
                fam_choice.append(choice == truth)
                fam_greedy.append(answer == truth)
        out[f"{family}_choice_accuracy"] = round(float(np.mean(fam_choice)), 4)
        out[f"{family}_greedy_accuracy"] = round(float(np.mean(fam_greedy)), 4)
        out[f"{family}_samples"] = len(fam_choice)
        choice_ok += fam_choice
        greedy_ok += fam_greedy
    out["accuracy"] = round(float(np.mean(choice_ok)), 4)
    out["greedy_accuracy"] = round(float(np.mean(greedy_ok)), 4)
    out["chose_forward"] = round(sum(c == 1 for c in choices_all) / len(choices_all), 4)
    out["well_formed"] = round(sum(a is not None for a in answers_all) / len(answers_all), 4)
    return out


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smol"], help="'smol', 'tiny', folders or s3:// URIs")
    parser.add_argument("--procedural", type=int, default=24, help="unseen procedural clips")
    parser.add_argument("--per-source", type=int, default=3, help="clips per FFmpeg test source")
    args = parser.parse_args()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    families = {"procedural": procedural_clips(args.procedural), "ffmpeg": ffmpeg_clips(args.per_source)}
    results = [evaluate(m, families) for m in args.models]
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
                "task": "playback order vs reversed (4 frames), never trained on",
                "chance": 0.5,
                "results": results,
                "ratio_to_first": [round(r["accuracy"] / reference, 3) if reference else None for r in results],
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
