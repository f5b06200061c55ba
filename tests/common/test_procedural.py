"""The procedural generator's ground truth (``scene_objects``) describes the frames it renders."""

from __future__ import annotations

import numpy as np
import pytest

from mvp.common.procedural import VideoSpec, render_frames, scene_objects


@pytest.mark.unit
def test_scene_objects_are_where_the_rendered_frames_show_them():
    spec = VideoSpec(seed=11, seconds=3, fps=2)
    frames = list(render_frames(spec))
    times = [i / spec.fps for i in range(len(frames))]
    checked = 0
    for frame, objects in zip(frames, scene_objects(spec, times), strict=True):
        assert 3 <= len(objects) <= 5
        for o in objects:
            x, y = round(o.x), round(o.y)
            if o.visible < 1.0 or not (0 <= x < spec.width and 0 <= y < spec.height):
                continue
            # a fully visible object's centre pixel has its colour (up to the sensor noise, sigma 3)
            assert np.abs(frame[y, x].astype(int) - np.array(o.color)).max() <= 15, (o, frame[y, x])
            checked += 1
    assert checked >= 5


@pytest.mark.unit
def test_scene_objects_follow_time_and_leave_the_frames_unchanged():
    spec = VideoSpec(seed=5, seconds=2, fps=1)
    before = [f.copy() for f in render_frames(spec)]
    at0, at1 = scene_objects(spec, [0.0, 1.0])
    assert [o.index for o in at0] == list(range(len(at0)))
    assert [(o.shape, o.color) for o in at0] == [(o.shape, o.color) for o in at1]  # same objects
    assert any((a.x, a.y) != (b.x, b.y) for a, b in zip(at0, at1, strict=True))  # that move
    assert all(0 <= o.visible <= 1 for o in at0 + at1)
    after = list(render_frames(spec))  # computing the facts draws nothing from the video's generator
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.integration
def test_the_same_spec_gives_the_same_video_bytes_in_every_process(tmp_path):
    """Sample seeds derive from each video's hash, so a corpus must be byte-identical from run to run.
    Before x264 ran ``cpu-independent``, concurrent writers of one spec disagreed in about one
    process in four (two different outputs); each writer loads torch first, as `mvp run` has."""
    import hashlib
    import subprocess
    import sys

    script = (
        "import sys, torch; from pathlib import Path; "
        "from mvp.common.procedural import VideoSpec, write_video; "
        "write_video(Path(sys.argv[1]), VideoSpec(seed=50000, seconds=6))"
    )
    paths = [tmp_path / f"v{i}.mp4" for i in range(6)]
    procs = [subprocess.Popen([sys.executable, "-c", script, str(p)]) for p in paths]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}) == 1


@pytest.mark.integration
def test_a_corpus_written_by_several_processes_is_the_same_corpus(tmp_path):
    """``write_corpus(workers=N)`` (the learning proof's data stage) gives the files one process gives,
    and keeps the ones already there."""
    from mvp.common.procedural import write_corpus

    one = write_corpus(tmp_path / "one", 3, seed=60000, seconds=3)
    (tmp_path / "many").mkdir()
    kept = tmp_path / "many" / one[0].name
    kept.write_bytes(b"kept")  # an existing file is never rewritten
    many = write_corpus(tmp_path / "many", 3, seed=60000, workers=2, seconds=3)
    assert [p.name for p in many] == [p.name for p in one]
    assert kept.read_bytes() == b"kept"
    assert [p.read_bytes() for p in many[1:]] == [p.read_bytes() for p in one[1:]]
    assert not list((tmp_path / "many").glob("*.part*"))
