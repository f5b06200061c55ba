"""Every relative link in the README and docs/ names a file that exists, and its #anchor a heading.

Docs move (the run-by-run history went from docs/trainer.md to docs/experiments/); a link left
behind sends a newcomer to the top of the wrong page. Anchors follow GitHub's slug rule: lower
case, punctuation but hyphens and underscores dropped, spaces to hyphens.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@functools.cache
def _anchors(path: Path) -> set[str]:
    body = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_slug(h) for h in HEADING.findall(body)}


def _docs() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def _broken(doc: Path) -> list[str]:
    broken = []
    body = FENCE.sub("", doc.read_text(encoding="utf-8"))
    for target in LINK.findall(body):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target}: no heading with that anchor")
    return broken


def test_slug_follows_github() -> None:
    assert _slug("The learning proof on mvp-smol (issue #17)") == "the-learning-proof-on-mvp-smol-issue-17"
    assert _slug("Transfer probe (`mvp.trainer.transfer`, never trained on)") == (
        "transfer-probe-mvptrainertransfer-never-trained-on"
    )


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path) -> None:
    assert _broken(doc) == []
