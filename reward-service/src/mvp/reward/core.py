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

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from pydantic import BaseModel, Field, model_validator


class InvalidLabelError(ValueError):
    """The ground truth itself is unusable (a request error, never a zero reward)."""


class FailureReason:
    """Stable codes for why a completion did not parse (returned as ``failure_reason``)."""

    NO_ANSWER_TAG = "no_answer_tag"
    ANSWER_INSIDE_THINK = "answer_inside_think"
    EMPTY_ANSWER = "empty_answer"
    NOT_AN_INTEGER = "not_an_integer"
    WRONG_COUNT = "wrong_count"
    OUT_OF_RANGE = "out_of_range"
    DUPLICATE_INDEX = "duplicate_index"

    ALL = (
        NO_ANSWER_TAG,
        ANSWER_INSIDE_THINK,
        EMPTY_ANSWER,
        NOT_AN_INTEGER,
        WRONG_COUNT,
        OUT_OF_RANGE,
        DUPLICATE_INDEX,
    )


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


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth of one sample (the fields of ``mvp.v1.Label``)."""

    answer: tuple[int, ...]
    num_candidates: int
    index_base: int = 1
    candidate_times_s: tuple[float, ...] = ()
    gap_start_s: float = 0.0
    gap_end_s: float = 0.0

    def __post_init__(self) -> None:
        k = len(self.answer)
        if k == 0:
            raise InvalidLabelError("label.answer is empty")
        if self.index_base not in (0, 1):
            raise InvalidLabelError(f"label.index_base must be 0 or 1, got {self.index_base}")
        if self.num_candidates < k:
            raise InvalidLabelError(
                f"label.num_candidates ({self.num_candidates}) is smaller than the answer length ({k})"
            )
        lo, hi = self.index_base, self.index_base + self.num_candidates - 1
        if any(not (lo <= a <= hi) for a in self.answer):
            raise InvalidLabelError(f"label.answer {list(self.answer)} has indices outside [{lo}, {hi}]")
        if len(set(self.answer)) != k:
            raise InvalidLabelError(f"label.answer {list(self.answer)} repeats an index")
        if self.candidate_times_s and len(self.candidate_times_s) != self.num_candidates:
            raise InvalidLabelError(
                f"label.candidate_times_s has {len(self.candidate_times_s)} entries for "
                f"{self.num_candidates} candidates"
            )

    @classmethod
    def from_dict(cls, data: object) -> Label:
        if not isinstance(data, dict):
            raise InvalidLabelError(f"label must be a JSON object, got {type(data).__name__}")
        try:
            answer = data["answer"]
            num_candidates = data["num_candidates"]
        except KeyError as exc:
            raise InvalidLabelError(f"label is missing field {exc.args[0]!r}") from None
        if not isinstance(answer, list) or not all(_is_int(a) for a in answer):
            raise InvalidLabelError("label.answer must be a list of integers")
        if not _is_int(num_candidates):
            raise InvalidLabelError("label.num_candidates must be an integer")
        index_base = data.get("index_base", 1)
        if not _is_int(index_base):
            raise InvalidLabelError("label.index_base must be an integer")
        times = data.get("candidate_times_s") or ()
        if not isinstance(times, list | tuple) or not all(_is_number(t) for t in times):
            raise InvalidLabelError("label.candidate_times_s must be a list of numbers")
        gap_start = data.get("gap_start_s", 0.0)
        gap_end = data.get("gap_end_s", 0.0)
        if not _is_number(gap_start) or not _is_number(gap_end):
            raise InvalidLabelError("label.gap_start_s and gap_end_s must be numbers")
        return cls(
            answer=tuple(answer),
            num_candidates=num_candidates,
            index_base=index_base,
            candidate_times_s=tuple(float(t) for t in times),
            gap_start_s=float(gap_start),
            gap_end_s=float(gap_end),
        )

    @classmethod
    def from_json(cls, text: str) -> Label:
        """Parses the JSON label synth-service writes (cached: a GRPO group repeats one label)."""
        return _label_from_json(text)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@lru_cache(maxsize=65536)
def _label_from_json(text: str) -> Label:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError, RecursionError) as exc:
        raise InvalidLabelError(f"label is not valid JSON: {exc}") from None
    return Label.from_dict(data)


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

    def components(self) -> dict[str, float]:
        return {
            "format": self.format,
            "selection": self.selection,
            "ordering": self.ordering,
            "exact": self.exact,
            "soft": self.soft,
        }


@dataclass(frozen=True, slots=True)
class ParsedAnswer:
    indices: list[int]
    failure_reason: str = ""
    failure_detail: str = ""


_OPEN_RE = re.compile(r"<answer>", re.IGNORECASE)
_CLOSE_RE = re.compile(r"</answer>", re.IGNORECASE)
_THINK_OPEN_RE = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE_RE = re.compile(r"</think>", re.IGNORECASE)
_SEPARATORS = re.compile(r"\s*(?:,|;|->|→|\s)\s*")
_MAX_DIGITS = 9


def parse_answer(completion: str, k: int, num_candidates: int, index_base: int = 1) -> ParsedAnswer:
    """Extracts K candidate indices from the last ``<answer>…</answer>`` block of ``completion``.

    Lenient where intent is unambiguous (case of the tag, whitespace, surrounding brackets,
    separators ``,`` ``;`` ``->`` or spaces); strict otherwise. Never raises."""
    end = start = -1
    for match in _CLOSE_RE.finditer(completion):
        end = match.start()
    if end >= 0:
        for match in _OPEN_RE.finditer(completion, 0, end):
            start = match.end()
    if start < 0:
        return ParsedAnswer([], FailureReason.NO_ANSWER_TAG, "no complete <answer>...</answer> block")
    end = _CLOSE_RE.search(completion, start).start()  # type: ignore[union-attr]  # nested: innermost
    opened = sum(1 for _ in _THINK_OPEN_RE.finditer(completion, 0, start))
    if opened and opened > sum(1 for _ in _THINK_CLOSE_RE.finditer(completion, 0, start)):
        return ParsedAnswer(
            [], FailureReason.ANSWER_INSIDE_THINK, "the answer block is inside an unclosed <think> block"
        )
    body = completion[start:end].strip()
    if len(body) >= 2 and body[0] + body[-1] in ("[]", "()", "{}"):
        body = body[1:-1].strip()
    if not body:
        return ParsedAnswer([], FailureReason.EMPTY_ANSWER, "the answer block is empty")
    tokens = [t for t in _SEPARATORS.split(body) if t]
    indices: list[int] = []
    for token in tokens:
        digits = token[1:] if token[0] in "+-" else token
        if not digits.isascii() or not digits.isdigit():
            return ParsedAnswer([], FailureReason.NOT_AN_INTEGER, f"{_clip(token)!r} is not a candidate index")
        if len(digits) > _MAX_DIGITS:
            return ParsedAnswer([], FailureReason.OUT_OF_RANGE, f"{_clip(token)!r} is not a candidate index")
        indices.append(int(token))
    if len(indices) != k:
        return ParsedAnswer(indices, FailureReason.WRONG_COUNT, f"expected {k} indices, got {len(indices)}")
    lo, hi = index_base, index_base + num_candidates - 1
    for value in indices:
        if not lo <= value <= hi:
            return ParsedAnswer(indices, FailureReason.OUT_OF_RANGE, f"{value} is outside [{lo}, {hi}]")
    if len(set(indices)) != k:
        return ParsedAnswer(indices, FailureReason.DUPLICATE_INDEX, "an index is repeated")
    return ParsedAnswer(indices)


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


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


def score(completion: str, label: Label, config: RewardConfig) -> RewardResult:
    """Scores one completion; never raises for any completion text."""
    k = len(label.answer)
    parsed = parse_answer(completion, k, label.num_candidates, label.index_base)
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
    if k == 1:
        ordering = selection
    else:
        concordant = sum(1 for i in range(len(chosen)) for j in range(i + 1, len(chosen)) if chosen[i] < chosen[j])
        ordering = concordant / (k * (k - 1) / 2)
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
    )


def format_answer(indices: Sequence[int]) -> str:
    """Candidate indices in the answer format the parser reads: ``<answer>a, b, c</answer>``."""
    return "<answer>" + ", ".join(str(a) for a in indices) + "</answer>"


def correct_completion(label: Label) -> str:
    """The canonical completion that earns the maximum reward for ``label``."""
    return format_answer(label.answer)
