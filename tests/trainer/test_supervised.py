"""Supervised fine-tuning on MVP answers (the learning proof's warm start): an epoch really fits the
labels (the answer-token loss on the trained prompts falls) on real samples of a real corpus job."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from tests.media import procedural_examples

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_a_supervised_epoch_fits_the_labels(tmp_path: Path) -> None:
    from mvp.model.policy import Policy
    from mvp.model.tiny import ensure_tiny_model
    from mvp.trainer.config import LocalTrainConfig
    from mvp.trainer.local import select_trainable
    from mvp.trainer.supervised import supervised_epoch

    examples = procedural_examples(tmp_path, seed=4400)
    torch.manual_seed(0)
    policy = Policy(ensure_tiny_model())
    trainable = select_trainable(policy.model, LocalTrainConfig(train_embeddings=True, train_vision=True))
    optimizer = torch.optim.AdamW(trainable, lr=3e-3)
    encoded = {ex.id: policy.encode(ex.prompt, ex.images) for ex in examples}
    rng = random.Random(0)
    losses = [
        supervised_epoch(policy, examples, optimizer, trainable, 2, lambda ex: encoded[ex.id], rng) for _ in range(6)
    ]
    assert losses[-1] < 0.5 * losses[0], losses
