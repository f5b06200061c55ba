"""Folders built once into a shared cache (the tiny fixture, mvp-smol, downloaded checkpoints),
safely when several processes build the same one at the same time: two `mvp serve` replicas on a
fresh node, or the test suite's workers."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

PART = ".part-"


def is_in_progress(path: Path) -> bool:
    """Whether ``path`` is a builder's temporary folder (``build_once``)."""
    return PART in path.name


def build_once(path: Path, write: Callable[[Path], None], complete: Callable[[Path], bool]) -> Path:
    """``path``, built by ``write(tmp)`` into a temporary sibling of this process's own and renamed
    into place, unless ``complete(path)`` already holds. Of concurrent builders the first rename
    wins; the others discard their copy and return the winner's. A folder that is there but not
    complete (a crash of an older build) is replaced."""
    if complete(path):
        return path
    tmp = path.with_name(f"{path.name}{PART}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not complete(path):
            shutil.rmtree(path, ignore_errors=True)
        try:
            os.rename(tmp, path)  # refused when another builder's folder is already in place
        except OSError:
            if not complete(path):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
