"""`bf16_update`: the GRPO update's forward and backward under bf16 autocast. From the same rollouts
it must move the weights the way the fp32 update does (same direction, similar size), and it must
really run in bf16 (the update is not bit-identical to fp32's). Real samples from a real corpus job,
rewards from a real reward-service."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch

from mvp.clients import RewardClient
from mvp.common.storage import Storage
from tests.media import procedural_examples
from tests.procs import Proc

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _update(policy, examples, score, bf16: bool) -> torch.Tensor:
    """One GRPO step from a fixed seed; returns the flattened change of the trainable weights."""
    from mvp.trainer.local import LocalTrainConfig, LocalTrainer

    config = LocalTrainConfig(
        prompts_per_step=2, n_samples_per_prompt=6, max_new_tokens=8, lr=1e-3, entropy_coef=0.01, bf16_update=bf16
    )
    trainer = LocalTrainer(policy, examples, score, config, Storage(), "/nonexistent")
    before = [p.detach().clone() for p in trainer.trainable]
    random.seed(0)
    torch.manual_seed(0)
    trainer.grpo_step()
    return torch.cat([(p.detach() - b).flatten() for p, b in zip(trainer.trainable, before, strict=True)])


def test_bf16_update_moves_the_weights_like_fp32(reward_server: Proc, tmp_path: Path) -> None:
    from mvp.model.policy import Policy
    from mvp.model.tiny import ensure_tiny_model

    examples = procedural_examples(tmp_path, seed=4200)
    client = RewardClient(f"127.0.0.1:{reward_server.ports['grpc']}")

    base = Policy(ensure_tiny_model())
    fp32 = _update(copy.deepcopy(base), examples, client.score, bf16=False)
    bf16 = _update(copy.deepcopy(base), examples, client.score, bf16=True)

    assert fp32.abs().sum() > 0 and bf16.abs().sum() > 0
    assert not torch.equal(fp32, bf16), "bf16_update changed nothing: autocast did not run"
    cosine = torch.nn.functional.cosine_similarity(fp32, bf16, dim=0)
    assert cosine > 0.9, float(cosine)
    assert 0.5 < float(bf16.norm() / fp32.norm()) < 2.0
