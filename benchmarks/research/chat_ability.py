"""Does mvp-smol still chat? Issue #32: served mvp-smol answered "Which frame comes first?" with
nothing. This asks the same plain questions of three models, greedily, and counts empty answers:

- ``smollm2``: SmolLM2-135M-Instruct itself (text only: it has no eyes), the ability to keep;
- ``unaligned``: mvp-smol before alignment (SmolLM2 + the distilled vision tower, merger untrained);
- ``mvp-smol``: the committed default (alignment merged in).

Three kinds of question: text-only chat ("What is the capital of France?"), a question about two
frames ("Which frame comes first?"), and LMMs-Eval's multiple-choice form ("Answer with the
option's letter from the given choices directly."), whose answers are checked for a letter.

Prints one JSON line per model, then the summary JSON (last line): each model's share of empty
answers and of multiple-choice answers that start with a letter, ``ratio_vs_smollm2`` the text
answers mvp-smol gives non-empty as a fraction of SmolLM2's.
"""

from __future__ import annotations

import json
import re
import sys
import time

TEXT = [
    "What is the capital of France?",
    "Name three colours.",
    "What is 2 + 3?",
    "Say hello to a new user.",
    "What do people usually eat for breakfast?",
    "Write one sentence about the sea.",
]
FRAMES = [
    "Which frame comes first?",
    "Describe the two images.",
    "Which frame comes first? Answer 1 or 2.",
    "What changes between the first and the second image?",
]
CHOICE = (
    "Which image was taken first?\nA. The first image\nB. The second image\nC. Both at once\nD. Neither\n"
    "Answer with the option's letter from the given choices directly."
)
MAX_NEW_TOKENS = 32


def frames():
    """The first and last frame of a 4 s procedural clip, at the model's frame geometry."""
    from PIL import Image

    from mvp.common.procedural import VideoSpec, render_frames

    clip = list(render_frames(VideoSpec(seed=3, seconds=4, fps=1)))
    return [Image.fromarray(clip[0]), Image.fromarray(clip[-1])]


def ask_lm(tokenizer, lm, question: str) -> str:
    import torch

    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    with torch.no_grad():
        out = lm.generate(ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


def ask_policy(policy, question: str, images: list) -> str:
    parts = [{"type": "image"} for _ in images] + [{"type": "text", "text": question}]
    enc = policy.encode_messages([{"role": "user", "content": parts}], images)
    out = policy.sample(enc, 1, MAX_NEW_TOKENS, temperature=1.0, greedy=True)
    return policy.decode(out)[0].strip()


def summary(name: str, answers: dict[str, list[str]]) -> dict:
    every = [a for group in answers.values() for a in group]
    choice = answers.get("choice", [])
    return {
        "model": name,
        "empty_share": round(sum(not a for a in every) / len(every), 3),
        "text_nonempty": sum(bool(a) for a in answers["text"]),
        "frames_nonempty": sum(bool(a) for a in answers.get("frames", [])),
        "choice_letter": sum(bool(re.match(r"^\(?[A-D]\b", a)) for a in choice),
        "answers": answers,
    }


def main() -> None:
    from mvp.model import smol
    from mvp.model.policy import Policy

    t0 = time.perf_counter()
    results = {}
    tokenizer, lm = smol.load_smollm2()
    results["smollm2"] = summary("smollm2", {"text": [ask_lm(tokenizer, lm, q) for q in TEXT]})
    print(json.dumps(results["smollm2"]), flush=True)
    del lm
    images = frames()
    for name, align in (("unaligned", None), ("mvp-smol", smol.ALIGN_FILE)):
        model, tok, processor = smol.assemble(align_weights=align)
        policy = Policy.from_parts(model.eval(), tok, processor)
        answers = {
            "text": [ask_policy(policy, q, []) for q in TEXT],
            "frames": [ask_policy(policy, q, images) for q in FRAMES],
            "choice": [ask_policy(policy, CHOICE, images)],
        }
        results[name] = summary(name, answers)
        print(json.dumps(results[name]), flush=True)
    base = results["smollm2"]["text_nonempty"]
    out = {
        "bench": "chat_ability",
        "max_new_tokens": MAX_NEW_TOKENS,
        **{f"{n}_empty_share": r["empty_share"] for n, r in results.items()},
        **{f"{n}_text_nonempty": f"{r['text_nonempty']}/{len(TEXT)}" for n, r in results.items()},
        **{f"{n}_choice_letter": r["choice_letter"] for n, r in results.items() if n != "smollm2"},
        "ratio_vs_smollm2": round(results["mvp-smol"]["text_nonempty"] / base, 3) if base else None,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out), file=sys.stdout)


if __name__ == "__main__":
    main()
