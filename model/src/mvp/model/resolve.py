"""Which model a ``--model`` value names: the models the project ships, by name, or a checkpoint."""

from __future__ import annotations

from pathlib import Path

from mvp.common.storage import Storage, download_folder, is_s3


def resolve_model(model: str, storage: Storage, cache: Path) -> Path:
    """'smol' -> mvp-smol (built once into the cache); 'tiny' -> the random-init test fixture;
    s3://… -> downloaded once into cache; else a folder."""
    if model == "smol":
        from mvp.model.smol import ensure_smol_model

        return ensure_smol_model()
    if model == "tiny":
        from mvp.model.tiny import ensure_tiny_model

        return ensure_tiny_model()
    if is_s3(model):
        folder = cache / model.removeprefix("s3://").replace("/", "_")
        if not (folder / "config.json").exists():
            download_folder(storage, model, folder)
        return folder
    return Path(model)
