"""The MVP sample and its answer, declared once for every service, the trainer and the model.

- the prompt (``render_prompt``): context frames with a gap, then the candidates, each frame an
  ``<image>`` placeholder in the order of the sample's images list; as chat messages
  (``prompt_messages``) for the chat template and the OpenAI API;
- the answer: ``format_answer`` writes ``<answer>a, b, c</answer>``, ``parse_answer`` reads it
  back (never raises; a failure has a stable ``FailureReason`` code);
- the ground truth: ``Label`` (the fields of ``mvp.v1.Label``), its JSON (``label_json``), and the
  frames a sample row references (``frame_uris``).

Pure Python: no torch, no protobuf, no I/O.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

IMAGE_PLACEHOLDER = "<image>"
PROMPT_VERSION = "mvp-prompt-v1"
# The largest candidate pool a label may describe (so K <= this too): far above any MVP prompt
# (K + l of a few dozen frames), low enough that scoring one label stays cheap.
MAX_CANDIDATES = 1024


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
        if self.num_candidates > MAX_CANDIDATES:
            raise InvalidLabelError(f"label.num_candidates {self.num_candidates} exceeds {MAX_CANDIDATES}")
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
        if not all(math.isfinite(t) for t in (*self.candidate_times_s, self.gap_start_s, self.gap_end_s)):
            raise InvalidLabelError("label times (candidate_times_s, gap_start_s, gap_end_s) must be finite numbers")
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
        """Parses a label JSON string (what ``label_json`` writes)."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError, RecursionError) as exc:  # ValueError: also Python's 4300-digit int limit
            raise InvalidLabelError(f"label is not valid JSON: {str(exc)[:200]}") from None
        return cls.from_dict(data)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class ParsedAnswer:
    indices: list[int]
    failure_reason: str = ""
    failure_detail: str = ""
    # Where each of ``indices`` is written in the completion, [start, end) in code points (only when
    # parsed ``with_spans``).
    spans: list[tuple[int, int]] = field(default_factory=list)


_OPEN_RE = re.compile(r"<answer>", re.IGNORECASE)
_CLOSE_RE = re.compile(r"</answer>", re.IGNORECASE)
_THINK_OPEN_RE = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE_RE = re.compile(r"</think>", re.IGNORECASE)
_SEPARATORS = re.compile(r"\s*(?:,|;|->|→|\s)\s*")
_MAX_DIGITS = 9


def parse_answer(
    completion: str, k: int, num_candidates: int, index_base: int = 1, with_spans: bool = False
) -> ParsedAnswer:
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
    start, end = _strip(completion, start, end)
    if end - start >= 2 and completion[start] + completion[end - 1] in ("[]", "()", "{}"):
        start, end = _strip(completion, start + 1, end - 1)
    if start >= end:
        return ParsedAnswer([], FailureReason.EMPTY_ANSWER, "the answer block is empty")
    spans: list[tuple[int, int]] = []
    if with_spans:  # where each index is written (the split below, with offsets; slower)
        pos = start
        for sep in _SEPARATORS.finditer(completion, start, end):
            if sep.start() > pos:
                spans.append((pos, sep.start()))
            pos = sep.end()
        if pos < end:
            spans.append((pos, end))
        tokens = [completion[a:b] for a, b in spans]
    else:
        tokens = [t for t in _SEPARATORS.split(completion[start:end]) if t]
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
    return ParsedAnswer(indices, spans=spans)


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    """``text[start:end]`` without surrounding whitespace, as offsets (``str.strip``'s whitespace)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def format_answer(indices: Sequence[int]) -> str:
    """Candidate indices in the answer format the parser reads: ``<answer>a, b, c</answer>``."""
    return "<answer>" + ", ".join(str(a) for a in indices) + "</answer>"


def render_prompt(num_context_before: int, num_context_after: int, k: int, num_candidates: int, base: int) -> str:
    """The text prompt; each ``<image>`` is one frame, in the order of the sample's images list
    (context frames, then candidates). The answer-format example uses placeholders, never numbers,
    so it can never be scored as an answer."""
    lines = [
        f"These are frames from one video, in temporal order. {k} consecutive frame"
        f"{'s are' if k > 1 else ' is'} missing at the gap.",
    ]
    number = 1
    for _ in range(num_context_before):
        lines.append(f"Frame {number}: <image>")
        number += 1
    lines.append(f"[GAP: {k} missing frame{'s' if k > 1 else ''}]")
    for _ in range(num_context_after):
        lines.append(f"Frame {number}: <image>")
        number += 1
    lines.append("Candidates:")
    for i in range(num_candidates):
        lines.append(f"Candidate {i + base}: <image>")
    placeholders = ", ".join(f"c{j + 1}" for j in range(k))
    lines.append(
        f"Which {k} candidate{'s' if k > 1 else ''} fill the gap, in temporal order? Think briefly inside "
        f"<think></think>, then give the candidate numbers as <answer>{placeholders}</answer>."
    )
    return "\n".join(lines)


def prompt_messages(prompt: str) -> list[dict]:
    """An MVP prompt as one chat user turn: text and image parts in order (the chat template's
    and the OpenAI API's content-part shape)."""
    parts: list[dict] = []
    for i, chunk in enumerate(prompt.split(IMAGE_PLACEHOLDER)):
        if i > 0:
            parts.append({"type": "image"})
        if chunk:
            parts.append({"type": "text", "text": chunk})
    return [{"role": "user", "content": parts}]


def label_json(sample: dict) -> str:
    """The label of a sample (mvp.v1.Sample as JSON) as the reward-service reads it: the mvp.v1.Label
    fields, with the zero values proto3 JSON omits restored where their absence would be misread
    (``index_base`` 0 would otherwise default to 1)."""
    label = dict(sample["label"])
    label.setdefault("index_base", 0)
    return json.dumps(label, sort_keys=True)


def openai_messages(prompt: str, image_urls: list[str]) -> list[dict]:
    """The prompt as OpenAI chat messages, each ``<image>`` an ``image_url`` part (in order)."""
    urls = iter(image_urls)
    parts = [
        {"type": "image_url", "image_url": {"url": next(urls)}} if p["type"] == "image" else p
        for p in prompt_messages(prompt)[0]["content"]
    ]
    return [{"role": "user", "content": parts}]


def frame_uris(sample: dict) -> list[str]:
    """The frames a sample row references, in the prompt's ``<image>`` order: context frames, then
    candidates."""
    return [f["uri"] for f in sample.get("context_frames", []) + sample.get("candidates", [])]
