"""Frame embedders for de-duplication and distractor difficulty.

Each maps frames to unit vectors so similarity is a dot product:
- ``thumb`` (default): 16x16 luma thumbnail, mean-removed and L2-normalised; similarity is the
  Pearson correlation of the thumbnails, in [-1, 1]. Fast (microseconds), no weights, robust to
  global brightness changes; identical frames score 1, unrelated scenes near 0.
- ``dhash``: 64-bit difference hash (horizontal gradients of a 9x8 thumbnail), mapped to ±1
  vectors / 8 so similarity = 1 - 2 * hamming / 64, in [-1, 1]; robust to small shifts and noise.
- ``clip:PATH``: image embeddings of any transformers vision-language checkpoint at PATH
  (cosine similarity), as in the paper; needs the ``clip`` extra and local weights.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

Embedder = Callable[[list[np.ndarray]], np.ndarray]


def _luma(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(rgb).convert("L").resize(size, Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32)


def thumb(frames: list[np.ndarray]) -> np.ndarray:
    out = np.empty((len(frames), 256), dtype=np.float32)
    for i, rgb in enumerate(frames):
        v = _luma(rgb, (16, 16)).ravel()
        v -= v.mean()
        norm = float(np.linalg.norm(v))
        out[i] = v / norm if norm > 1e-6 else 0.0
    return out


def dhash(frames: list[np.ndarray]) -> np.ndarray:
    out = np.empty((len(frames), 64), dtype=np.float32)
    for i, rgb in enumerate(frames):
        g = _luma(rgb, (9, 8))
        bits = (g[:, 1:] > g[:, :-1]).ravel()
        out[i] = np.where(bits, 1.0, -1.0) / 8.0
    return out


def _clip(path: str) -> Embedder:
    try:
        import torch
        from transformers import AutoModel, AutoProcessor
    except ImportError as exc:  # pragma: no cover - optional extra
        raise RuntimeError("embedder 'clip:PATH' needs `pip install mvp-synth-service[clip]`") from exc
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)

    def embed(frames: list[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            inputs = processor(images=[Image.fromarray(f) for f in frames], return_tensors="pt")
            features = model.get_image_features(**inputs)
        features = torch.nn.functional.normalize(features, dim=-1)
        return features.numpy().astype(np.float32)

    return embed


_CACHE: dict[str, Embedder] = {}


def get_embedder(name: str) -> Embedder:
    if name == "thumb":
        return thumb
    if name == "dhash":
        return dhash
    if name.startswith("clip:"):
        if name not in _CACHE:
            _CACHE[name] = _clip(name.removeprefix("clip:"))
        return _CACHE[name]
    raise ValueError(f"unknown embedder {name!r}")
