"""Which model a ``--model`` value names: the models the project ships, by name, or a checkpoint."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from mvp.common.storage import Storage, download_folder, is_s3
from mvp.model.cache import build_once, is_in_progress


def resolve_model(model: str, storage: Storage, cache: Path, keep: int | None = None) -> Path:
    """'smol' -> mvp-smol (built once into the cache); 'tiny' -> the random-init test fixture;
    s3://… -> downloaded into ``cache`` (reused while the objects under the URI are unchanged; with
    ``keep``, only that many checkpoints stay in ``cache``, the least recently used go); else a folder."""
    if model == "smol":
        from mvp.model.smol import ensure_smol_model

        return ensure_smol_model()
    if model == "tiny":
        from mvp.model.tiny import ensure_tiny_model

        return ensure_tiny_model()
    if is_s3(model):
        return cached_checkpoint(model, storage, cache, keep)
    return Path(model)


def cached_checkpoint(uri: str, storage: Storage, cache: Path, keep: int | None = None) -> Path:
    """The checkpoint under ``uri`` as a local folder in ``cache``, named by the URI and a digest of
    its objects' names, sizes and ETags: a checkpoint rewritten at the same URI (a rerun, another
    store) is downloaded again, never served stale. The download lands in a temporary folder renamed
    into place (``build_once``), so an interrupted one is never taken for a checkpoint."""
    listing = sorted((o.uri, o.size, o.etag) for o in storage.list(uri.rstrip("/") + "/"))
    digest = hashlib.sha256(repr(listing).encode()).hexdigest()[:12]
    folder = cache / f"{uri.removeprefix('s3://').rstrip('/').replace('/', '_')}-{digest}"
    build_once(folder, lambda tmp: download_folder(storage, uri, tmp), lambda f: (f / "config.json").exists())
    os.utime(folder)  # most recently used
    if keep is not None:
        evict(cache, keep, folder)
    return folder


def evict(cache: Path, keep: int, current: Path) -> list[Path]:
    """Removes all but the ``keep`` most recently used checkpoint folders of ``cache`` (never
    ``current``, nor another process's download in progress); returns what it removed."""
    entries = sorted(
        (p for p in cache.iterdir() if p.is_dir() and p != current and not is_in_progress(p)),
        key=lambda p: p.stat().st_mtime,
    )
    stale = entries[: max(0, len(entries) - max(keep - 1, 0))]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale
