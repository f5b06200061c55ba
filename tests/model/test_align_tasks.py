"""The alignment's scene-fact tasks: labels that agree with the generator, never an MVP question."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from mvp.model.frames import video_objects
from mvp.model.tasks import FRAME_SIZE, MOTION_OPTIONS, WHERE_OPTIONS, colour_name, make_sample

pytestmark = pytest.mark.unit

VIDEOS = list(range(200_000, 200_012))


@pytest.fixture(scope="module")
def objects():
    return {v: video_objects(v, 20) for v in VIDEOS}


def test_colour_names_only_clear_hues():
    assert colour_name((230, 30, 30)) == "red"
    assert colour_name((30, 200, 40)) == "green"
    assert colour_name((40, 60, 220)) == "blue"
    assert colour_name((128, 120, 125)) is None  # grey: no hue to name
    assert colour_name((200, 120, 30)) == "orange"
    assert colour_name((150, 40, 200)) == "purple"


def test_where_answers_the_region_of_the_named_object(objects):
    rng = random.Random(1)
    answers = Counter()
    for _ in range(120):
        s = make_sample(rng, VIDEOS, 20, 1, 0, "where", objects)
        (video, frame), (answer,) = s.frames[0], s.answer
        named = s.prompt.split("Where is the ")[1].split(" in this frame")[0]
        colour, shape = named.split(" ")
        (o,) = [o for o in objects[video][frame] if o.shape == shape and colour_name(o.color) == colour]
        row, col = divmod(answer - 1, 3)
        assert col * FRAME_SIZE[0] / 3 <= o.x < (col + 1) * FRAME_SIZE[0] / 3
        assert row * FRAME_SIZE[1] / 2 <= o.y < (row + 1) * FRAME_SIZE[1] / 2
        assert s.k == 1 and s.num_candidates == len(WHERE_OPTIONS) and "gap" not in s.prompt.lower()
        answers[answer] += 1
    assert len(answers) == 6  # every region occurs


def test_motion_answers_the_way_the_named_object_moved(objects):
    rng = random.Random(2)
    answers = Counter()
    for _ in range(120):
        s = make_sample(rng, VIDEOS, 20, 1, 0, "motion", objects)
        (video, a), (_, b) = s.frames
        assert b - a in (1, 2) and f"filmed {b - a} second" in s.prompt  # the order is given, never asked
        named = s.prompt.split("Which way did the ")[1].split(" move")[0]
        colour, shape = named.split(" ")
        (i,) = [o.index for o in objects[video][a] if o.shape == shape and colour_name(o.color) == colour]
        dx, dy = objects[video][b][i].x - objects[video][a][i].x, objects[video][b][i].y - objects[video][a][i].y
        expected = ("left" if dx < 0 else "right") if abs(dx) > abs(dy) else ("up" if dy < 0 else "down")
        assert MOTION_OPTIONS[s.answer[0] - 1] == expected
        answers[expected] += 1
    assert len(answers) == 4


def test_fact_stages_parse_in_their_short_form_only():
    from mvp.model.align import AlignConfig, stage_name

    config = AlignConfig(curriculum="where:300,1:3:near:100,motion:200")
    assert config.stages() == [(1, 0, "where", 300), (1, 3, "near", 100), (1, 0, "motion", 200)]
    assert [stage_name(*s[:3]) for s in config.stages()] == ["where", "K1-l3-near", "motion"]
    for bad in ("1:0:where:10", "near:10", "where", "where:x"):
        with pytest.raises(ValueError, match="curriculum stage"):
            AlignConfig(curriculum=bad).stages()


def test_fact_samples_need_the_objects():
    with pytest.raises(ValueError, match="scene objects"):
        make_sample(random.Random(0), VIDEOS, 20, 1, 0, "where")


def test_mvp_stage_asks_the_mvp_question_on_the_models_own_videos():
    """An 'mvp' sample is the prompt synth writes for the same N/K/l, its answer the masked frames in
    temporal order, its distractors from the same video within 8 s of the gap and never a context frame."""
    from mvp.common.sample import parse_answer, render_prompt

    rng = random.Random(0)
    for k in (1, 2):
        for _ in range(50):
            s = make_sample(rng, VIDEOS, 20, k, 7, "mvp")
            assert s.prompt == render_prompt(1, 1, k, k + 7, 1)
            assert len({v for v, _ in s.frames}) == 1  # one video
            before, after = s.frames[0][1], s.frames[1][1]
            candidates = [f for _, f in s.frames[2:]]
            gap = list(range(before + 1, after))
            assert len(gap) == k and [candidates[a - 1] for a in s.answer] == gap
            distractors = set(candidates) - set(gap)
            assert len(distractors) == 7 and not distractors & {before, after}
            assert all(min(abs(d - g) for g in gap) <= 8 for d in distractors)
            assert not parse_answer(f"<answer>{', '.join(map(str, s.answer))}</answer>", k, k + 7).failure_reason
