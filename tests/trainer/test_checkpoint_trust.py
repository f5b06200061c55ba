"""Checkpoints read back from the store are data, never code, and never name paths outside their run
(issue #15, item 5): a pickle planted as trainer_state.pt does not execute, and a tampered
latest.json cannot make the trainer read another prefix or delete a folder it did not create."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from mvp.common.storage import Storage
from mvp.trainer.local import CheckpointError, LocalTrainConfig, LocalTrainer, checkpoint_uri, download_folder

pytestmark = pytest.mark.unit


class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_latest_json_is_confined_to_its_run_prefix():
    out = "s3://runs/exp1"
    assert checkpoint_uri(out, {"uri": "s3://runs/exp1/step-000004"}) == "s3://runs/exp1/step-000004"
    for bad in (
        "s3://runs/exp1/..",
        "s3://runs/exp1/step-000004/..",
        "s3://runs/other/step-000004",
        "s3://runs/exp1/../exp2/step-000004",
        "/tmp",
        "",
    ):
        with pytest.raises(CheckpointError):
            checkpoint_uri(out, {"uri": bad})


def test_download_never_deletes_or_writes_outside_its_folder(tmp_path):
    store = tmp_path / "store"
    (store / "ckpt").mkdir(parents=True)
    (store / "ckpt" / "config.json").write_text("{}")
    keep = tmp_path / "work" / "keep.txt"
    keep.parent.mkdir()
    keep.write_text("precious")
    folder = download_folder(Storage(), str(store / "ckpt"), tmp_path / "work" / "model")
    assert (folder / "config.json").read_text() == "{}"
    assert keep.read_text() == "precious"


def test_planted_pickle_in_trainer_state_does_not_run(tmp_path):
    from mvp.model.policy import Policy
    from mvp.model.tiny import ensure_tiny_model

    policy = Policy(ensure_tiny_model())
    out = tmp_path / "run"
    trainer = LocalTrainer(policy, [], lambda t, lab: [], LocalTrainConfig(), Storage(), str(out))
    trainer.checkpoint()
    marker = tmp_path / "pwned"
    boom = _Boom()
    boom.marker = str(marker)
    state_file = out / "step-000000" / "trainer_state.pt"
    state = torch.load(state_file, weights_only=True)  # what the trainer wrote loads as plain data
    torch.save({**state, "evil": boom}, state_file)
    with pytest.raises(pickle.UnpicklingError):
        LocalTrainer(policy, [], lambda t, lab: [], LocalTrainConfig(), Storage(), str(out)).resume(tmp_path / "dl")
    assert not marker.exists()
    json.loads((out / "latest.json").read_text())  # the run's own commit record is untouched
