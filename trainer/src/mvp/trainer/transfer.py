"""A held-out probe no model here ever trains on: "are these frames in playback order or reversed?"
(the paper's transfer claim in miniature). Each clip gives two samples, its four frames forward and
reversed, so a model that always answers the same scores exactly 0.5.

Scored two ways: **choice** (the headline): the model's log-likelihood of the two answers
``<answer>1</answer>`` and ``<answer>2</answer>``; the likelier one is its choice (as LMMs-Eval
scores multiple choice; independent of whether the model follows this prompt's one-index format).
**greedy**: its free answer, parsed (a wrong format counts as wrong; ``well_formed`` says how often).

Clips: unseen procedural videos (seeds far from every corpus, distillation and alignment) and
"real" clips rendered by FFmpeg's own test sources (testsrc2, mandelbrot, life, cellauto: moving
content not drawn by our generator), decoded with PyAV like any video.

Used by `mvp run` (a report section, before and after training) and `benchmarks/research/transfer_probe.py`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mvp.common.geometry import FRAME_SIZE
from mvp.common.procedural import VideoSpec, render_frames
from mvp.common.sample import parse_answer
from mvp.common.seeds import TRANSFER_PROBE
from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from mvp.model.policy import Policy
from mvp.trainer.runner import load_policy

PROBE_SEED_OFFSET = TRANSFER_PROBE  # apart from every corpus and the model's stages (mvp.common.seeds)
_SIZE = "{}x{}".format(*FRAME_SIZE)  # the geometry the model reads (mvp.common.geometry)
FFMPEG_SOURCES = {
    "testsrc2": f"testsrc2=size={_SIZE}:rate=25",
    "mandelbrot": f"mandelbrot=size={_SIZE}:rate=25",
    "life": f"life=size={_SIZE}:rate=25:mold=10:ratio=0.3:death_color=#C83232:life_color=#00ff00",
    "cellauto": f"cellauto=size={_SIZE}:rate=25:rule=110",
}
PROMPT = (
    "These 4 frames come from one video:\n"
    + "".join(f"Frame {i}: <image>\n" for i in range(1, 5))
    + "Are they shown in playback order, or reversed? Answer <answer>1</answer> if in playback order, "
    "<answer>2</answer> if reversed."
)
TASK = "playback order vs reversed (4 frames), never trained on"

Clip = list[np.ndarray]


def procedural_clips(count: int) -> list[Clip]:
    """Four frames 2 s apart from each of ``count`` unseen procedural videos."""
    clips = []
    for i in range(count):
        spec = VideoSpec(seed=PROBE_SEED_OFFSET + i, seconds=8)
        clips.append([f for j, f in enumerate(render_frames(spec)) if j % 50 == 0][:4])
    return clips


def ffmpeg_clips(per_source: int) -> list[Clip]:
    """Four frames 2 s apart from each FFmpeg test source, at ``per_source`` start times."""
    import av

    clips = []
    for source in FFMPEG_SOURCES.values():
        for k in range(per_source):
            start = 1.0 + 3.0 * k
            with av.open(f"{source},trim=duration={start + 8:g}", format="lavfi") as container:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            picks = [int((start + 2 * j) * 25) for j in range(4)]
            clips.append([frames[min(p, len(frames) - 1)] for p in picks])
    return clips


def clip_families(procedural: int, per_source: int) -> dict[str, list[Clip]]:
    return {"procedural": procedural_clips(procedural), "ffmpeg": ffmpeg_clips(per_source)}


@torch.no_grad()
def probe(policy: Policy, families: dict[str, list[Clip]]) -> dict:
    """Choice and greedy accuracy per clip family and overall, the share of 'forward' choices, and
    how often the greedy answer was well formed."""
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
    out: dict = {}
    choices, answers, choice_ok, greedy_ok = [], [], [], []
    for family, clips in families.items():
        fam_choice, fam_greedy = [], []
        for clip in clips:
            for truth, frames in ((1, clip), (2, clip[::-1])):
                enc = policy.encode(PROMPT, [Image.fromarray(f) for f in frames])
                logp, _ = policy.token_logprobs(enc, padded)
                scores = [float(logp[i, : lengths[i]].sum()) for i in range(2)]
                choice = 1 + int(scores[1] > scores[0])
                parsed = parse_answer(policy.decode(policy.sample(enc, 1, 12, 1.0, greedy=True))[0], 1, 2)
                answer = None if parsed.failure_reason else parsed.indices[0]
                choices.append(choice)
                answers.append(answer)
                fam_choice.append(choice == truth)
                fam_greedy.append(answer == truth)
        out[f"{family}_choice_accuracy"] = round(float(np.mean(fam_choice)), 4)
        out[f"{family}_greedy_accuracy"] = round(float(np.mean(fam_greedy)), 4)
        out[f"{family}_samples"] = len(fam_choice)
        choice_ok += fam_choice
        greedy_ok += fam_greedy
    out["accuracy"] = round(float(np.mean(choice_ok)), 4)
    out["greedy_accuracy"] = round(float(np.mean(greedy_ok)), 4)
    out["chose_forward"] = round(sum(c == 1 for c in choices) / len(choices), 4)
    out["well_formed"] = round(sum(a is not None for a in answers) / len(answers), 4)
    out["samples"] = len(choices)
    return out


def probe_checkpoint(model: str, families: dict[str, list[Clip]], store: StoreSettings | None = None) -> dict:
    """``probe`` on a checkpoint folder, s3:// URI, 'smol' or 'tiny'."""
    with tempfile.TemporaryDirectory(prefix="mvp-transfer-") as cache:  # a downloaded checkpoint goes with it
        policy = load_policy(model, Storage(store or StoreSettings()), Path(cache))
        return {"model": model, **probe(policy, families)}
