"""The fine-grained MVP reward, as a pure library (no I/O, no torch, no protobuf).

A completion answers an MVP sample with K candidate indices in temporal order. It is scored as

    reward = w_format * format + w_selection * min(1, selection + soft) + w_ordering * ordering
             + w_exact * exact

with every component in [0, 1] (docs/reward.md has the derivation and worked examples):

- format: 1 when the answer is well formed (an ``<answer>`` block holding exactly K distinct, valid
  candidate indices). Format is a gate: a malformed answer scores 0 on every component, with a
  named ``failure_reason``.
- selection: |answer ∩ positives| / K, order ignored.
- ordering: fraction of the K(K-1)/2 ground-truth pairs of positives that the answer contains in
  the right relative order (both selected, correct order). For K = 1 it equals selection.
- exact: 1 only for the exact sequence.
- soft (off by default): graded credit for chosen distractors that lie close in time to the gap.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from pydantic import BaseModel, Field, model_validator

from mvp.common.sample import (
    FailureReason,
    InvalidLabelError,
    Label,
    ParsedAnswer,
    format_answer,
    parse_answer,
)

__all__ = [
    "FailureReason",
    "InvalidLabelError",
    "Label",
    "LabelCache",
    "ParsedAnswer",
    "RewardConfig",
    "RewardResult",
    "concordant_pairs",
    "correct_completion",
    "parse_answer",
    "score",
]


class RewardConfig(BaseModel):
    """Weights and options of the reward; the weights must sum to 1 so the reward is in [0, 1]."""

    format_weight: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Credit for a well-formed answer: small, so format is learnt "
        "early but a well-formed wrong answer earns little.",
    )
    selection_weight: float = Field(0.3, ge=0, le=1, description="Credit for picking the right frames, order ignored.")
    ordering_weight: float = Field(
        0.3, ge=0, le=1, description="Credit for pairwise temporal order among the picked positives."
    )
    exact_weight: float = Field(
        0.3, ge=0, le=1, description="Bonus for the exact sequence, so the optimum is unambiguous."
    )
    soft: bool = Field(False, description="Give graded selection credit to chosen distractors near the gap.")
    soft_tau_s: float = Field(2.0, gt=0, description="Soft credit decays as exp(-distance_to_gap / tau).")
    soft_max_credit: float = Field(
        0.5, ge=0, le=1, description="Soft credit of a distractor touching the gap, relative to a positive."
    )

    @model_validator(mode="after")
    def _weights_sum_to_one(self) -> RewardConfig:
        total = self.format_weight + self.selection_weight + self.ordering_weight + self.exact_weight
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"reward weights must sum to 1 (got {total:.6g})")
        return self


# A label of MAX_CANDIDATES candidates with their times takes under 40 KiB of JSON. Longer text is
# refused before it is parsed: the JSON parser holds the interpreter lock for the whole text.
MAX_LABEL_CHARS = 256 << 10


class LabelCache:
    """Parsed labels by their JSON text, least recently used first out, bounded in bytes (a GRPO
    group repeats one label G times; a flood of large distinct labels cannot grow the process).
    Labels longer than ``max_item_bytes`` are parsed every time and never kept; longer than
    ``MAX_LABEL_CHARS``, they are ``InvalidLabelError``."""

    def __init__(self, max_bytes: int = 8 << 20, max_item_bytes: int = 64 << 10) -> None:
        self.max_bytes = max_bytes
        self.max_item_bytes = max_item_bytes
        self.bytes = 0
        self._items: OrderedDict[str, tuple[Label, int]] = OrderedDict()  # text -> (label, bytes counted)
        self._lock = threading.Lock()

    def get(self, text: str) -> Label:
        with self._lock:
            hit = self._items.get(text)
            if hit is not None:
                self._items.move_to_end(text)
                return hit[0]
        if len(text) > MAX_LABEL_CHARS:
            raise InvalidLabelError(f"label JSON of {len(text)} characters exceeds {MAX_LABEL_CHARS}")
        label = Label.from_json(text)
        size = len(text) + 64 * (len(label.answer) + len(label.candidate_times_s))
        if size <= self.max_item_bytes:
            with self._lock:
                if text not in self._items:
                    self._items[text] = (label, size)
                    self.bytes += size
                while self.bytes > self.max_bytes and self._items:
                    self.bytes -= self._items.popitem(last=False)[1][1]
        return label


LABELS = LabelCache()


@dataclass(frozen=True, slots=True)
class SlotCredit:
    """One answered index on its own: where it is written in the completion ([start, end) in code
    points), whether it is a masked frame (``selected``) and the right one for its place
    (``in_place``), and its credit: the reward of a K = 1 answer naming it, over K, so that a fully
    right answer's slots sum to the total minus the format weight. Token-level credit assignment
    (``mvp.trainer``'s ``slot_credit``) gives each index token its own slot's advantage."""

    start: int
    end: int
    selected: bool
    in_place: bool
    reward: float


@dataclass(slots=True)
class RewardResult:
    """The total and every named component, plus why parsing failed (empty when it did not)."""

    reward: float = 0.0
    format: float = 0.0
    selection: float = 0.0
    ordering: float = 0.0
    exact: float = 0.0
    soft: float = 0.0
    failure_reason: str = ""
    failure_detail: str = ""
    parsed_answer: list[int] = field(default_factory=list)
    slots: list[SlotCredit] = field(default_factory=list)

    def components(self) -> dict[str, float]:
        return {
            "format": self.format,
            "selection": self.selection,
            "ordering": self.ordering,
            "exact": self.exact,
            "soft": self.soft,
        }


def _soft_credit(answer: list[int], label: Label, config: RewardConfig) -> float:
    """Credit for chosen distractors near the gap, as a fraction of K positives' credit."""
    times = label.candidate_times_s
    if not times:
        return 0.0
    positives = set(label.answer)
    total = 0.0
    for index in answer:
        if index in positives:
            continue
        t = times[index - label.index_base]
        distance = max(label.gap_start_s - t, t - label.gap_end_s, 0.0)
        total += config.soft_max_credit * math.exp(-distance / config.soft_tau_s)
    return total / len(label.answer)


def score(completion: str, label: Label, config: RewardConfig, slots: bool = False) -> RewardResult:
    """Scores one completion; never raises for any completion text. ``slots``: also each answered
    index's own credit (``RewardResult.slots``)."""
    k = len(label.answer)
    parsed = parse_answer(completion, k, label.num_candidates, label.index_base, with_spans=slots)
    if parsed.failure_reason:
        return RewardResult(
            failure_reason=parsed.failure_reason,
            failure_detail=parsed.failure_detail,
            parsed_answer=parsed.indices,
        )
    answer = parsed.indices
    truth = label.answer
    rank = {a: i for i, a in enumerate(truth)}
    chosen = [rank[a] for a in answer if a in rank]
    selection = len(chosen) / k
    ordering = selection if k == 1 else concordant_pairs(chosen) / (k * (k - 1) / 2)
    exact = 1.0 if tuple(answer) == truth else 0.0
    soft = _soft_credit(answer, label, config) if config.soft else 0.0
    reward = (
        config.format_weight
        + config.selection_weight * min(1.0, selection + soft)
        + config.ordering_weight * ordering
        + config.exact_weight * exact
    )
    return RewardResult(
        reward=reward,
        format=1.0,
        selection=selection,
        ordering=ordering,
        exact=exact,
        soft=soft,
        parsed_answer=answer,
        slots=slot_credits(answer, parsed.spans, label, config) if slots else [],
    )


def slot_credits(
    answer: list[int], spans: list[tuple[int, int]], label: Label, config: RewardConfig
) -> list[SlotCredit]:
    """Per answered index: ``selection_weight`` if it is a masked frame (or its soft credit if it is
    a distractor near the gap, when ``soft`` is on) plus ``ordering_weight + exact_weight`` if it
    is the masked frame of its own place, all over K."""
    k = len(label.answer)
    positives = set(label.answer)
    credits = []
    for place, (index, (start, end)) in enumerate(zip(answer, spans, strict=True)):
        selected = index in positives
        in_place = index == label.answer[place]
        chosen = 1.0 if selected else (_soft_credit([index], label, config) * k if config.soft else 0.0)
        value = config.selection_weight * min(1.0, chosen) + (config.ordering_weight + config.exact_weight) * in_place
        credits.append(SlotCredit(start, end, selected, in_place, value / k))
    return credits


def concordant_pairs(ranks: list[int]) -> int:
    """Pairs i < j with ranks[i] < ranks[j] (distinct ranks), in O(K log K): all pairs minus the
    inversions, counted by merge sort. (The quadratic count took 9.5 s at K = 24,000.)"""
    n = len(ranks)
    inversions = 0
    values = list(ranks)
    width = 1
    while width < n:
        merged: list[int] = []
        for lo in range(0, n, 2 * width):
            left, right = values[lo : lo + width], values[lo + width : lo + 2 * width]
            i = j = 0
            while i < len(left) and j < len(right):
                if left[i] <= right[j]:
                    merged.append(left[i])
                    i += 1
                else:
                    merged.append(right[j])
                    inversions += len(left) - i
                    j += 1
            merged.extend(left[i:])
            merged.extend(right[j:])
        values = merged
        width *= 2
    return n * (n - 1) // 2 - inversions


def correct_completion(label: Label) -> str:
    """The canonical completion that earns the maximum reward for ``label``."""
    return format_answer(label.answer)
