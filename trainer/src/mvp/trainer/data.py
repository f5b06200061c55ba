"""MVP samples for training and evaluation, read from the store (or a folder) as synth-service
wrote them, with their frames decoded once and kept in memory."""

from __future__ import annotations

import io
import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image

from mvp.common.sample import format_answer, frame_uris, label_json
from mvp.common.storage import Storage


@dataclass
class Example:
    id: str
    prompt: str
    label_json: str
    answer: list[int]
    num_candidates: int
    index_base: int
    images: list[Image.Image]

    @property
    def k(self) -> int:
        return len(self.answer)


def load_examples(storage: Storage, samples_uri: str, limit: int | None = None) -> list[Example]:
    """Reads a samples.jsonl and every frame it references (in parallel)."""
    rows = [json.loads(x) for x in storage.get_bytes(samples_uri).decode().splitlines() if x.strip()]
    rows = rows[:limit] if limit else rows
    uris = [frame_uris(r) for r in rows]
    flat = sorted({u for group in uris for u in group})
    with ThreadPoolExecutor(max_workers=8) as pool:
        blobs = dict(zip(flat, pool.map(storage.get_bytes, flat), strict=True))
    examples = []
    for row, group in zip(rows, uris, strict=True):
        label = row["label"]
        examples.append(
            Example(
                id=row["id"],
                prompt=row["prompt"],
                label_json=label_json(row),
                answer=list(label["answer"]),
                num_candidates=int(label["num_candidates"]),
                index_base=int(label.get("index_base", 0)),
                images=[Image.open(io.BytesIO(blobs[u])).convert("RGB") for u in group],
            )
        )
    return examples


def random_picks(example: Example, rng: random.Random) -> list[int]:
    """K distinct random candidate indices, in random order."""
    return rng.sample(range(example.index_base, example.index_base + example.num_candidates), example.k)


def random_answer(example: Example, rng: random.Random) -> str:
    """A well-formed answer with K distinct random candidates: teaches the format, not the task."""
    return format_answer(random_picks(example, rng))


def random_label(example: Example, rng: random.Random) -> str:
    """The example's label with a random answer: the control run's reward carries no MVP signal."""
    label = json.loads(example.label_json)
    label["answer"] = random_picks(example, rng)
    return json.dumps(label, sort_keys=True)


def balanced_orders(example: Example, n: int, rng: random.Random) -> list[list[int]]:
    """Candidate orders for the ``n`` members of a permutation-balanced group: ``order[i]`` is the
    (current) candidate shown at position i. The first masked frame lands on each position in turn
    (positions visited in a seeded order, repeated when n exceeds the pool), the rest of each order
    is random: an answer that follows candidate numbers earns, over the group, what chance earns,
    so only answers that follow frames carry advantage."""
    c = example.num_candidates
    first = example.answer[0] - example.index_base
    targets = list(range(c))
    rng.shuffle(targets)
    orders = []
    for j in range(n):
        order = list(range(c))
        rng.shuffle(order)
        at, target = order.index(first), targets[j % c]
        order[at], order[target] = order[target], order[at]
        orders.append(order)
    return orders


def permuted_label(example: Example, order: list[int]) -> str:
    """The example's label for its candidates shown in ``order`` (see ``balanced_orders``): the answer
    names the masked frames' new positions, candidate times follow their frames."""
    label = json.loads(example.label_json)
    base = example.index_base
    position = {old: new for new, old in enumerate(order)}
    label["answer"] = [position[a - base] + base for a in example.answer]
    times = label.get("candidate_times_s")
    if times:
        label["candidate_times_s"] = [times[old] for old in order]
    return json.dumps(label, sort_keys=True)
