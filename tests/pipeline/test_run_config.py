"""`mvp run`'s config: extra training sets are validated synth configs, named by their index."""

from __future__ import annotations

import pytest

from mvp.pipeline.config import RunConfig

pytestmark = pytest.mark.unit


def test_extra_train_replaces_synth_fields():
    config = RunConfig(level=2, extra_train=[{"num_masked": 1}, {"num_masked": 2, "distractor_sampling": "nearest"}])
    first, second = config.extra_synth(0), config.extra_synth(1)
    assert (first.num_masked, first.num_frames) == (1, config.synth.num_frames)
    assert second.distractor_sampling == "nearest" and second.num_distractors == config.synth.num_distractors
    assert first.digest() != config.synth.digest() != second.digest()  # their samples never mix


@pytest.mark.parametrize(
    ("extra", "needle"),
    [({"num_masked": 9}, "num_masked=9"), ({"no_such_field": 1}, "no_such_field"), ({"fps": 0}, "fps")],
)
def test_invalid_extra_train_names_its_index(extra, needle):
    with pytest.raises(ValueError, match=r"extra_train\[1\]") as err:
        RunConfig(extra_train=[{"num_masked": 1}, extra])
    assert needle in str(err.value)


def test_level_sets_the_task_and_a_synth_section_changes_fields_on_top():
    from mvp.common.synth_config import LEVELS, level_config

    assert RunConfig().level == 1
    one = RunConfig().synth
    assert (one.num_frames, one.num_masked, one.num_distractors) == (3, 1, 7)
    assert one.distractor_sampling == "uniform" and one.neighbourhood_s == 8.0
    two = RunConfig(level=2, synth={"samples_per_video": 2}).synth
    assert (two.num_frames, two.num_masked, two.num_distractors, two.samples_per_video) == (4, 2, 7, 2)
    assert set(LEVELS) == {1, 2, 3}
    with pytest.raises(ValueError, match="unknown MVP level 4"):
        level_config(4)
    with pytest.raises(ValueError, match="eval_levels"):
        RunConfig(eval_levels=[5])


def test_steps_and_seed_are_set_once_and_reach_every_section():
    config = RunConfig(train={"steps": 100}, seed=3)
    assert config.steps == config.train.steps == 100  # a file's train.steps is not ignored
    assert config.train.seed == config.synth.seed == 3
    with pytest.raises(ValueError, match=r"steps=5 and train.steps=100"):
        RunConfig(steps=5, train={"steps": 100})
    with pytest.raises(ValueError, match=r"seed=1 and synth.seed=2"):
        RunConfig(seed=1, synth={"seed": 2})


def test_a_flag_and_the_config_file_setting_one_field_differently_is_an_error():
    import argparse

    from mvp.common.settings import add_settings_flags, settings_from_args

    parser = argparse.ArgumentParser()
    add_settings_flags(parser, RunConfig, skip={"train", "synth", "extra_train", "eval_levels"})
    args = parser.parse_args(["--videos", "8"])
    with pytest.raises(ValueError, match=r"--videos 8 and 12 in the config file"):
        settings_from_args(RunConfig, args, base={"videos": 12})
    assert settings_from_args(RunConfig, args, base={"videos": 8, "eval_limit": 5}).eval_limit == 5
