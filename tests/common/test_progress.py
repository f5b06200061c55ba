"""Progress for people: plain, rate-limited lines when not on a terminal."""

from __future__ import annotations

import io

import pytest

from mvp.common.progress import LineProgress, progress

pytestmark = pytest.mark.unit


def test_pipe_gets_plain_lines_at_a_sensible_rate() -> None:
    out = io.StringIO()
    bar = progress(total=1000, desc="grpo", unit="step", file=out)
    assert isinstance(bar, LineProgress)
    for _ in range(1000):
        bar.update(1)
        bar.set_postfix(reward="0.5")
    bar.close()
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text
    assert 2 <= len(lines) <= 12  # the first, one per 10%, the last
    assert lines[-1].startswith("grpo: 1000/1000 step") and "reward=0.5" in lines[-1]


def test_unknown_total_still_reports_first_and_last() -> None:
    out = io.StringIO()
    bar = LineProgress(desc="synth", unit="video", file=out, every_s=3600)
    for _ in range(50):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("synth: 1 video") and lines[-1].startswith("synth: 50 video")
    assert len(lines) == 2
