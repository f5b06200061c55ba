"""`slot_credit`: each answer index's tokens take that index's own advantage. Real tokenizer (the
tiny fixture's, which writes " 3" and "12" as single tokens), real reward-service over gRPC, and one
real GRPO step."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from mvp.clients import RewardClient
from mvp.common.storage import Storage
from tests.media import procedural_examples
from tests.procs import Proc

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _completions(policy, texts: list[str]) -> torch.Tensor:
    """Token ids as the policy samples them: each text, end of turn, then padding."""
    rows = [policy.tokenizer(t + "<|im_end|>", add_special_tokens=False)["input_ids"] for t in texts]
    out = torch.full((len(rows), max(map(len, rows)) + 2), policy.pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def test_index_tokens_get_their_own_slots_advantage(reward_server: Proc) -> None:
    from mvp.model.policy import Policy
    from mvp.model.tiny import ensure_tiny_model
    from mvp.trainer.grpo import group_advantages
    from mvp.trainer.local import LocalTrainConfig, LocalTrainer

    policy = Policy(ensure_tiny_model())
    config = LocalTrainConfig(advantage_estimator="dr_grpo", slot_credit=True)
    trainer = LocalTrainer(policy, [], lambda *_: [], config, Storage(), "/nonexistent")
    label = json.dumps({"answer": [12, 3], "num_candidates": 12})
    # right-then-wrong, wrong-then-right (equal rewards), both right, and one that does not parse
    texts = ["<answer>12, 5</answer>", "<answer>7, 3</answer>", "<answer>12,3</answer>", "12, 3"]
    completions = _completions(policy, texts)
    assert policy.decode(completions) == texts
    with RewardClient(f"127.0.0.1:{reward_server.ports['grpc']}") as client:
        results = client.score(texts, [label] * len(texts), include_slots=True)
    rewards = torch.tensor([r.reward for r in results])
    assert rewards[0] == rewards[1], "the first two are alike to a per-sequence reward"
    sequence = group_advantages(rewards.unsqueeze(0), estimator="dr_grpo")[0]

    adv = trainer.slot_token_advantages(completions, results, sequence)

    tokens = [[policy.tokenizer.decode([i]) for i in row] for row in completions.tolist()]
    place0 = [tokens[j].index(next(t for t in tokens[j] if t.strip() in ("12", "7"))) for j in range(3)]
    place1 = [max(i for i, t in enumerate(tokens[j]) if t.strip() in ("3", "5")) for j in range(3)]
    right = [[True, False], [False, True], [True, True]]
    for j in range(3):
        a0, a1 = float(adv[j, place0[j]]), float(adv[j, place1[j]])
        assert (a0 > 0) == right[j][0] and (a1 > 0) == right[j][1], (texts[j], a0, a1)
        others = [t for t in range(completions.shape[1]) if t not in (place0[j], place1[j])]
        assert torch.all(adv[j, others] == sequence[j]), "format and padding tokens keep the sequence's"
    assert torch.all(adv[3] == sequence[3]), "an unparsed answer has no slots"
    assert float(adv[0, place0[0]]) == pytest.approx(float(adv[1, place1[1]]))


def test_a_grpo_step_with_slot_credit_trains_and_logs_each_place(reward_server: Proc, tmp_path: Path) -> None:
    from mvp.model.policy import Policy
    from mvp.model.tiny import ensure_tiny_model
    from mvp.trainer.local import LocalTrainConfig, LocalTrainer

    examples = procedural_examples(tmp_path, seed=4300)
    client = RewardClient(f"127.0.0.1:{reward_server.ports['grpc']}")
    config = LocalTrainConfig(
        prompts_per_step=2, n_samples_per_prompt=6, max_new_tokens=8, lr=1e-3, entropy_coef=0.01, slot_credit=True
    )
    trainer = LocalTrainer(Policy(ensure_tiny_model()), examples, client.score, config, Storage(), "/nonexistent")
    before = [p.detach().clone() for p in trainer.trainable]
    random.seed(0)
    torch.manual_seed(0)
    entry = trainer.grpo_step()
    moved = sum(float((p.detach() - b).abs().sum()) for p, b in zip(trainer.trainable, before, strict=True))
    assert moved > 0
    places = sorted(k for k in entry.values if k.startswith("in_place_"))
    assert places == ["in_place_1", "in_place_2"], places
    parsed = 1.0 - entry.values["parse_failed"]
    assert all(0.0 <= entry.values[k] <= parsed for k in places)
