"""OpenRLHF's remote-reward protocol, shared by the HTTP endpoint and ``reward_func.py``.

OpenRLHF (0.11: ``--reward.remote_url``; earlier: ``--remote_rm_url``) sends
``{"query": [...], "prompts": [...], "labels": [...]}`` where each query is the decoded prompt plus
response with special tokens kept, and expects ``{"rewards": [...], "scores": [...],
"extra_logs": {name: [...]}}`` back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mvp.reward.core import RewardResult

# Qwen-style chat templates open the model's turn with this marker; everything after its last
# occurrence is the response. Other templates fall back to stripping the prompt prefix.
_ASSISTANT_MARKERS = ("<|im_start|>assistant\n", "<|im_start|>assistant")
_END_MARKERS = ("<|im_end|>", "<|endoftext|>")


def response_from_query(query: str, prompt: str | None = None) -> str:
    """The model's response inside an OpenRLHF query (prompt + response, special tokens kept).

    The prompt's own answer-format example must never be scored, so the response is cut out:
    after the last assistant marker if the chat template has one, else after the prompt text."""
    for marker in _ASSISTANT_MARKERS:
        cut = query.rfind(marker)
        if cut >= 0:
            response = query[cut + len(marker) :]
            break
    else:
        response = query[len(prompt) :] if prompt and query.startswith(prompt) else query
    for marker in _END_MARKERS:
        end = response.find(marker)
        if end >= 0:
            response = response[:end]
    return response


COMPONENTS = ("format", "selection", "ordering", "exact", "soft")


def openrlhf_payload(
    rewards: Sequence[float], components: Sequence[Mapping[str, float]], failed: Sequence[bool]
) -> dict[str, object]:
    """OpenRLHF's response shape: rewards (for the advantage), scores (for dynamic filtering) and
    extra_logs (one list per logged quantity, averaged by OpenRLHF into its training logs)."""
    extra = {f"mvp_{name}": [c[name] for c in components] for name in COMPONENTS}
    extra["mvp_parse_failed"] = [1.0 if f else 0.0 for f in failed]
    return {"rewards": list(rewards), "scores": list(rewards), "extra_logs": extra}


def to_openrlhf(results: Sequence[RewardResult]) -> dict[str, object]:
    """``openrlhf_payload`` of library results."""
    return openrlhf_payload(
        [r.reward for r in results], [r.components() for r in results], [bool(r.failure_reason) for r in results]
    )
