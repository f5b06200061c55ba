"""Cache folders are built whole, once, even when several processes build the same one at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvp.model.cache import build_once, is_in_progress

pytestmark = pytest.mark.unit


def complete(path: Path) -> bool:
    return (path / "done").exists()


def test_a_builder_that_loses_the_race_returns_the_winners_folder(tmp_path: Path) -> None:
    target = tmp_path / "model"
    calls = []

    def write_inner(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "done").write_text("inner")
        calls.append("inner")

    def write_outer(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "done").write_text("outer")
        build_once(target, write_inner, complete)  # another process finishes first, meanwhile
        calls.append("outer")

    assert build_once(target, write_outer, complete) == target
    assert calls == ["inner", "outer"] and (target / "done").read_text() == "inner"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folder left
    assert build_once(target, write_outer, complete) == target and calls == ["inner", "outer"]  # built once


def test_an_incomplete_folder_is_replaced_and_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "half-written").write_text("")

    def fail(tmp: Path) -> None:
        tmp.mkdir()
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        build_once(target, fail, complete)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]

    def write(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "done").write_text("")

    build_once(target, write, complete)
    assert sorted(p.name for p in target.iterdir()) == ["done"]
    assert is_in_progress(tmp_path / "model.part-12-ab") and not is_in_progress(target)
