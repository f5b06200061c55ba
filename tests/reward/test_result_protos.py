"""The service's remembered RewardResult messages are exactly the messages built afresh."""

from __future__ import annotations

import json
import random

import pytest

from mvp.reward import core
from mvp.reward.service import ResultProtos, result_to_proto

pytestmark = pytest.mark.unit


def results(n: int, seed: int = 0) -> list[core.RewardResult]:
    rng = random.Random(seed)
    config = core.RewardConfig()
    out = []
    for _ in range(n):
        answer = rng.sample(range(1, 9), 3)
        label = core.Label.from_json(json.dumps({"answer": answer, "num_candidates": 8}))
        roll = rng.random()
        if roll < 0.3:
            text = f"<answer>{', '.join(map(str, answer))}</answer>"
        elif roll < 0.8:
            text = f"<answer>{', '.join(map(str, rng.sample(range(1, 9), rng.randint(1, 4))))}</answer>"
        else:
            text = rng.choice(["no answer", "<answer>9, x</answer>", "<answer>1, 1, 2</answer>"])
        out.append(core.score(text, label, config, slots=rng.random() < 0.2))
    return out


def test_remembered_messages_equal_fresh_ones_and_the_memo_is_bounded() -> None:
    protos = ResultProtos(limit=16)
    batch = results(400)
    assert any(r.slots for r in batch) and any(r.failure_reason for r in batch)
    for _ in range(2):  # the second pass takes remembered messages
        for r in batch:
            message = protos(r)
            assert message == result_to_proto(r)
            assert message.SerializeToString(deterministic=True) == result_to_proto(r).SerializeToString(
                deterministic=True
            )
        assert len(protos._built) <= 16
