"""OpenRLHF's remote-reward protocol, shared by the HTTP endpoint and ``reward_func.py``.

OpenRLHF (0.11: ``--reward.remote_url``; earlier: ``--remote_rm_url``) sends
``{"query": [...], "prompts": [...], "labels": [...]}`` where each query is the decoded prompt plus
response with special tokens kept, and expects ``{"rewards": [...], "scores": [...],
"extra_logs": {name: [...]}}`` back.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def to_openrlhf(results: Sequence[RewardResult]) -> dict[str, object]:
    """OpenRLHF's response shape: rewards (for the advantage), scores (for dynamic filtering) and
    extra_logs (one list per logged quantity, averaged by OpenRLHF into its training logs)."""
    rewards = [r.reward for r in results]
    return {
        "rewards": rewards,
        "scores": rewards,
        "extra_logs": {
            "mvp_format": [r.format for r in results],
            "mvp_selection": [r.selection for r in results],
            "mvp_ordering": [r.ordering for r in results],
            "mvp_exact": [r.exact for r in results],
            "mvp_soft": [r.soft for r in results],
            "mvp_parse_failed": [1.0 if r.failure_reason else 0.0 for r in results],
        },
    }
