"""The label-ceiling diagnostic: its per-place accounting (its supervised epoch is
mvp.trainer.supervised's, tested in tests/trainer/test_supervised.py)."""

from __future__ import annotations

import pytest

from tests.benchmarks.scripts import load_benchmark


@pytest.fixture(scope="module")
def ceiling():
    return load_benchmark("research/label_ceiling")


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
