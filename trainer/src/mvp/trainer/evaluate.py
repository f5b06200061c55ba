"""Held-out evaluation through the reward-service: greedy answers, scored by the same reward the
training used, aggregated into mean reward, exact / selection / ordering, format rate, chance and
bootstrap intervals; optionally the content-dependence diagnostic (does the answer follow the
frames or the candidate numbers?)."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from mvp.common.sample import parse_answer
from mvp.model.policy import Encoded, Policy, append_tokens, reorder_images
from mvp.trainer.data import Example
from mvp.trainer.stats import bootstrap_ci

_COMPONENTS = ("exact", "selection", "ordering", "format")  # averaged, in the report's order


def chance_exact(examples: list[Example]) -> float:
    """Mean probability that a uniformly random well-formed answer is exactly right."""
    return sum(1.0 / math.perm(e.num_candidates, e.k) for e in examples) / max(1, len(examples))


def evaluate(
    policy: Policy,
    examples: list[Example],
    score: Callable[[list[str], list[str]], list],
    max_new_tokens: int = 16,
    encoded: Callable | None = None,
    predictions: list[dict] | None = None,
    diagnostics: bool = False,
    seed: int = 0,
) -> dict:
    """Aggregates over ``examples``; when ``predictions`` is a list, one record per sample is appended
    to it (its id, the greedy answer's text, the ground truth and the reward's components), so a
    researcher can see *which* answers moved, not only the means. ``exact_ci`` and
    ``mean_reward_ci`` are 95% bootstrap intervals of the means; with ``diagnostics`` the result
    also carries ``content_dependence`` (see that function)."""
    policy.model.eval()
    encode = encoded or (lambda ex: policy.encode(ex.prompt, ex.images))
    texts = greedy_answers(policy, [encode(ex) for ex in examples], max_new_tokens)
    results = score(texts, [e.label_json for e in examples])
    rows = [
        {
            "sample_id": ex.id,
            "completion": text,
            "ground_truth": ex.answer,
            "num_candidates": ex.num_candidates,
            "reward": r.reward,
            **{key: getattr(r.components, key) for key in _COMPONENTS},
        }
        for ex, text, r in zip(examples, texts, results, strict=True)
    ]
    if predictions is not None:
        predictions.extend(rows)
    n = max(1, len(rows))
    out = {
        "samples": len(rows),
        "max_new_tokens": max_new_tokens,
        "mean_reward": sum(row["reward"] for row in rows) / n,
        **{key: sum(row[key] for row in rows) / n for key in _COMPONENTS},
        "chance_exact": chance_exact(examples),
        "exact_ci": bootstrap_ci([row["exact"] for row in rows], seed=seed),
        "mean_reward_ci": bootstrap_ci([row["reward"] for row in rows], seed=seed),
    }
    if diagnostics:
        out["content_dependence"] = content_dependence(policy, examples, texts, encode, max_new_tokens, seed)
    return out


BATCH = 8  # prompts decoded together (prompts of one level share their text, so they batch)


def _batches(encs: list[Encoded]) -> list[list[int]]:
    """Indices of ``encs`` in batches of up to BATCH prompts with the same token ids."""
    by_text: dict[tuple, list[int]] = {}
    for i, enc in enumerate(encs):
        by_text.setdefault((tuple(enc.input_ids.tolist()), tuple(map(tuple, enc.image_grid_thw.tolist()))), []).append(
            i
        )
    return [ids[j : j + BATCH] for ids in by_text.values() for j in range(0, len(ids), BATCH)]


def greedy_answers(policy: Policy, encs: list[Encoded], max_new_tokens: int) -> list[str]:
    """The greedy answer to each prompt; prompts that share their text decode together (one prefill
    of the batch, its common start once), which is what makes a 256-sample evaluation affordable."""
    out = [""] * len(encs)
    for batch in _batches(encs):
        members = [encs[i] for i in batch]
        enc = members[0] if len(members) == 1 else members
        texts = policy.decode(policy.sample(enc, len(members), max_new_tokens, 1.0, greedy=True))
        for i, text in zip(batch, texts, strict=True):
            out[i] = text
    return out


def _derangement(n: int, rng: random.Random) -> list[int]:
    """A random order of n candidates in which none stays where it was (n >= 2)."""
    while True:
        order = list(range(n))
        rng.shuffle(order)
        if all(order[i] != i for i in range(n)):
            return order


def content_dependence(
    policy: Policy,
    examples: list[Example],
    answers: list[str],
    encode: Callable[[Example], Encoded],
    max_new_tokens: int = 16,
    seed: int = 0,
) -> dict:
    """Does the model read the frames? Two measurements on the same held-out samples.

    - **candidate shuffle**: the candidates are shown again in a random order that moves every one
      of them (the text unchanged); per answered index, ``follows_frame`` is the share whose new
      answer names the same frame as before (at its new number), ``follows_number`` the share that
      keeps the same number (now another frame). A model that reads the frames follows them; a
      position prior keeps the numbers. Over the samples whose first answer parsed.
    - **answer information**: I(first answer index; prompt) in nats, from the model's probability
      of each candidate number right after ``<answer>`` (normalised over the candidates):
      H(mean answer distribution) - mean H(answer distribution). 0 means the same answer
      distribution whatever the frames; log(candidates) is the most there is.
    ``top_answer_share``: the share of samples whose greedy answer is the single most common one."""
    rng = random.Random(seed + 1)
    shuffled = []  # (example, its first answer, the order its candidates are shown in again)
    for ex, text in zip(examples, answers, strict=True):
        first = parse_answer(text, ex.k, ex.num_candidates, ex.index_base)
        if not first.failure_reason and ex.num_candidates >= 2:
            shuffled.append((ex, first, _derangement(ex.num_candidates, rng)))
    encs = []
    for ex, _, order in shuffled:
        n_context = len(ex.images) - ex.num_candidates
        encs.append(reorder_images(encode(ex), [*range(n_context), *(n_context + i for i in order)]))
    frame = number = 0.0
    parsed_pairs = len(shuffled)
    for (ex, first, order), text in zip(shuffled, greedy_answers(policy, encs, max_new_tokens), strict=True):
        again = parse_answer(text, ex.k, ex.num_candidates, ex.index_base)
        if again.failure_reason:
            continue
        base = ex.index_base
        moved = [order.index(a - base) + base for a in first.indices]  # where each answered frame went
        frame += sum(a == m for a, m in zip(again.indices, moved, strict=True)) / ex.k
        number += sum(a == b for a, b in zip(again.indices, first.indices, strict=True)) / ex.k
    dists = first_index_distributions(policy, [encode(ex) for ex in examples], examples)
    info = _mutual_information(dists)
    counts = Counter(answers)
    return {
        "shuffled_samples": int(parsed_pairs),
        "follows_frame": frame / parsed_pairs if parsed_pairs else 0.0,
        "follows_number": number / parsed_pairs if parsed_pairs else 0.0,
        "answer_information_nats": info,
        "answer_information_max_nats": math.log(max((e.num_candidates for e in examples), default=1)),
        "top_answer": counts.most_common(1)[0][0] if counts else "",
        "top_answer_share": counts.most_common(1)[0][1] / len(answers) if answers else 0.0,
    }


@torch.no_grad()
def first_index_distributions(policy: Policy, encs: list[Encoded], examples: list[Example]) -> list[list[float]]:
    """Per prompt, P(first answer index = i | prompt, the answer began with ``<answer>``) over its
    candidates: one (batched) prefill of the prompt followed by ``<answer>``, its next-token
    probabilities of the candidate numbers, normalised over them. Numbers must be single tokens
    (candidate pools up to 10 here)."""
    tok = policy.tokenizer
    start = tok("<answer>", add_special_tokens=False)["input_ids"]
    with_start = [append_tokens(e, start) for e in encs]
    out: list[list[float]] = [[] for _ in encs]
    for batch in _batches(with_start):
        members = [with_start[i] for i in batch]
        logits, _ = policy.prefill(members[0] if len(members) == 1 else members, len(members))
        for row, i in enumerate(batch):
            ids = [tok(str(n), add_special_tokens=False)["input_ids"] for n in _numbers(examples[i])]
            if any(len(x) != 1 for x in ids):
                raise ValueError("candidate numbers must be single tokens for the answer-information diagnostic")
            out[i] = torch.softmax(logits[row].float()[[x[0] for x in ids]], dim=0).tolist()
    return out


def _numbers(ex: Example) -> range:
    return range(ex.index_base, ex.index_base + ex.num_candidates)


def _entropy(p: list[float]) -> float:
    return -sum(x * math.log(x) for x in p if x > 0)


def _mutual_information(dists: list[list[float]]) -> float:
    """I(answer; prompt) of per-prompt answer distributions over a shared index set (prompts with
    another number of candidates are grouped by size and weighted by their share)."""
    by_size: dict[int, list[list[float]]] = {}
    for d in dists:
        by_size.setdefault(len(d), []).append(d)
    total = 0.0
    for group in by_size.values():
        mean = [sum(col) / len(group) for col in zip(*group, strict=True)]
        total += len(group) / len(dists) * (_entropy(mean) - sum(_entropy(d) for d in group) / len(group))
    return round(total, 4)


def write_predictions(path: Path, records: list[dict]) -> None:
    """One JSON object per line, in the samples' order (see ``evaluate``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
