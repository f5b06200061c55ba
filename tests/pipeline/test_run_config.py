"""`mvp run`'s config: extra training sets are validated synth configs, named by their index."""

from __future__ import annotations

import pytest

from mvp.pipeline.config import RunConfig

pytestmark = pytest.mark.unit


def test_extra_train_replaces_synth_fields():
    config = RunConfig(extra_train=[{"num_masked": 1}, {"num_masked": 2, "distractor_sampling": "uniform"}])
    first, second = config.extra_synth(0), config.extra_synth(1)
    assert (first.num_masked, first.num_frames) == (1, config.synth.num_frames)
    assert second.distractor_sampling == "uniform" and second.num_distractors == config.synth.num_distractors
    assert first.digest() != config.synth.digest() != second.digest()  # their samples never mix


@pytest.mark.parametrize(
    ("extra", "needle"),
    [({"num_masked": 9}, "num_masked=9"), ({"no_such_field": 1}, "no_such_field"), ({"fps": 0}, "fps")],
)
def test_invalid_extra_train_names_its_index(extra, needle):
    with pytest.raises(ValueError, match=r"extra_train\[1\]") as err:
        RunConfig(extra_train=[{"num_masked": 1}, extra])
    assert needle in str(err.value)
