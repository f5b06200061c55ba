"""The label-ceiling diagnostic: its per-place accounting, and that its supervised epoch really
fits the labels (the answer-token loss on the trained prompts falls) on real samples."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from tests.benchmarks.scripts import load_benchmark
from tests.media import procedural_examples


@pytest.fixture(scope="module")
def ceiling():
    return load_benchmark("label_ceiling")


@pytest.mark.unit
def test_slot_accuracy_counts_each_place_and_whole_selections(ceiling) -> None:
    truth = [4, 2]
    records = [
        {"completion": "<answer>4, 2</answer>", "ground_truth": truth, "num_candidates": 9},  # both
        {"completion": "<answer>2, 4</answer>", "ground_truth": truth, "num_candidates": 9},  # swapped
        {"completion": "<answer>4, 7</answer>", "ground_truth": truth, "num_candidates": 9},  # slot 1
        {"completion": "<answer>4, 4</answer>", "ground_truth": truth, "num_candidates": 9},  # unparsed
    ]
    assert ceiling.slot_accuracy(records) == {"slot_1": 0.5, "slot_2": 0.25, "all_selected": 2}


@pytest.mark.slow
@pytest.mark.integration
def test_a_supervised_epoch_fits_the_labels(ceiling, tmp_path: Path) -> None:
    from mvp.model.policy import Policy
    from mvp.model.tiny import ensure_tiny_model
    from mvp.trainer.config import LocalTrainConfig
    from mvp.trainer.local import select_trainable

    examples = procedural_examples(tmp_path, seed=4400)
    torch.manual_seed(0)
    policy = Policy(ensure_tiny_model())
    trainable = select_trainable(policy.model, LocalTrainConfig(train_embeddings=True, train_vision=True))
    optimizer = torch.optim.AdamW(trainable, lr=3e-3)
    encoded = {ex.id: policy.encode(ex.prompt, ex.images) for ex in examples}
    rng = random.Random(0)
    losses = [
        ceiling.supervised_epoch(policy, examples, optimizer, trainable, 2, lambda ex: encoded[ex.id], rng)
        for _ in range(6)
    ]
    assert losses[-1] < 0.5 * losses[0], losses
