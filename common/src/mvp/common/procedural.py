"""Procedural videos whose temporal order is visually inferable from dynamics alone.

Each video: a textured background seen through a panning camera, with several objects that move
ballistically and bounce off the walls, grow or shrink, and occlude each other, plus sensor noise.
No text, clocks, counters or colour ramps encode time: order can only be inferred from motion,
growth and occlusion. Same seed = same video. Written as real H.264 mp4 files with PyAV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from mvp.common.geometry import FRAME_SIZE


@dataclass(frozen=True)
class VideoSpec:
    seed: int
    seconds: float = 20.0
    width: int = FRAME_SIZE[0]
    height: int = FRAME_SIZE[1]
    fps: int = 25


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random texture (sum of a few low-frequency waves per channel)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w, 3), np.float32)
    base = rng.uniform(40, 200, size=3)
    for c in range(3):
        layer = np.full((h, w), base[c], np.float32)
        for _ in range(4):
            fx, fy = rng.uniform(0.5, 4) * 2 * math.pi / w, rng.uniform(0.5, 4) * 2 * math.pi / h
            layer += rng.uniform(10, 35) * np.sin(fx * xx + fy * yy + rng.uniform(0, 2 * math.pi))
        out[..., c] = layer
    return out


@dataclass(frozen=True)
class _Scene:
    """Everything a video's seed decides before its first frame (drawn in one fixed order, so the
    renderer and ``scene_objects`` see the same scene)."""

    background: np.ndarray
    pan_speed: float
    pos: np.ndarray
    vel: np.ndarray
    radius0: np.ndarray
    growth: np.ndarray
    colors: np.ndarray
    square: np.ndarray


def _scene(rng: np.random.Generator, spec: VideoSpec) -> _Scene:
    w, h = spec.width, spec.height
    bg = _background(rng, h, w * 2)
    pan_speed = rng.uniform(4, 12) * rng.choice([-1, 1]) * w / 320  # px per second
    n_obj = int(rng.integers(3, 6))
    pos = rng.uniform([0.1 * w, 0.1 * h], [0.9 * w, 0.9 * h], size=(n_obj, 2))
    vel = rng.uniform(-1, 1, size=(n_obj, 2)) * rng.uniform(25, 70, size=(n_obj, 1)) * w / 320
    radius0 = rng.uniform(0.05, 0.12, size=n_obj) * h
    growth = rng.uniform(-0.35, 0.6, size=n_obj) * h / spec.seconds * 0.25
    colors = rng.uniform(20, 235, size=(n_obj, 3))
    square = rng.random(n_obj) < 0.4
    return _Scene(bg, float(pan_speed), pos, vel, radius0, growth, colors, square)


def _objects_at(scene: _Scene, spec: VideoSpec, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres (n, 2) and radii (n,) of the objects at time ``t``: ballistic motion with elastic
    bounces (the unbounded path reflected into the frame), growth clipped to a sane size."""
    p = scene.pos + scene.vel * t
    for axis, size in ((0, spec.width), (1, spec.height)):
        period = 2 * size
        q = np.mod(p[:, axis], period)
        p[:, axis] = np.where(q > size, period - q, q)
    r = np.clip(scene.radius0 + scene.growth * t, 0.02 * spec.height, 0.3 * spec.height)
    return p, r


def _masks(scene: _Scene, p: np.ndarray, r: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> list[np.ndarray]:
    out = []
    for k in range(len(p)):
        if scene.square[k]:
            out.append((np.abs(xx - p[k, 0]) < r[k]) & (np.abs(yy - p[k, 1]) < r[k]))
        else:
            out.append((xx - p[k, 0]) ** 2 + (yy - p[k, 1]) ** 2 < r[k] ** 2)
    return out


def render_frames(spec: VideoSpec):
    rng = np.random.default_rng(spec.seed)
    w, h = spec.width, spec.height
    scene = _scene(rng, spec)
    world_w = w * 2
    pan_speed = scene.pan_speed
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    n_frames = int(spec.seconds * spec.fps)
    for i in range(n_frames):
        t = i / spec.fps
        offset = (
            (pan_speed * t) % (world_w - w) if pan_speed > 0 else (world_w - w) - ((-pan_speed * t) % (world_w - w))
        )
        x0 = int(offset)
        frame = scene.background[:, x0 : x0 + w].copy()
        p, r = _objects_at(scene, spec, t)
        for k, mask in enumerate(_masks(scene, p, r, yy, xx)):  # later objects occlude earlier ones
            frame[mask] = scene.colors[k]
        frame += rng.normal(0, 3.0, size=frame.shape).astype(np.float32)
        yield np.clip(frame, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SceneObject:
    """One object of a procedural video at one moment, as the generator drew it (pixel units of the
    video's frame; ``visible``: the share of its area not hidden by objects drawn over it)."""

    index: int
    shape: str  # "circle" or "square"
    color: tuple[int, int, int]
    x: float
    y: float
    radius: float
    visible: float


def scene_objects(spec: VideoSpec, times_s: list[float]) -> list[list[SceneObject]]:
    """The ground truth behind ``render_frames(spec)`` at each of ``times_s``: every object's shape,
    colour, centre, size and visible share. For labelled tasks (what, where, which way it moves)."""
    rng = np.random.default_rng(spec.seed)
    scene = _scene(rng, spec)
    yy, xx = np.mgrid[0 : spec.height, 0 : spec.width].astype(np.float32)
    out = []
    for t in times_s:
        p, r = _objects_at(scene, spec, t)
        masks = _masks(scene, p, r, yy, xx)
        visible = [0.0] * len(masks)
        covered = np.zeros((spec.height, spec.width), bool)  # by the objects drawn after this one
        for k in reversed(range(len(masks))):
            area = int(masks[k].sum())
            visible[k] = int((masks[k] & ~covered).sum()) / area if area else 0.0
            covered |= masks[k]
        out.append(
            [
                SceneObject(
                    index=k,
                    shape="square" if scene.square[k] else "circle",
                    color=tuple(round(float(c)) for c in scene.colors[k]),
                    x=float(p[k, 0]),
                    y=float(p[k, 1]),
                    radius=float(r[k]),
                    visible=visible[k],
                )
                for k in range(len(masks))
            ]
        )
    return out


def write_video(path: Path, spec: VideoSpec) -> Path:
    """Encodes the procedural video as H.264 (yuv420p, GOP of 2 s) into ``path``. The same spec gives
    the same bytes in every process and on every machine with the same x264 build: x264 runs with one thread (its output
    depends on the thread count, which would follow the machine's cores) and ``cpu-independent``
    (without it x264 picked CPU-dependent code paths that changed the output in about one process
    in four here, and so the hash every sample's seed derives from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.mp4")
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.options = {
            "preset": "veryfast",
            "crf": "23",
            "g": str(2 * spec.fps),
            "threads": "1",
            "x264-params": "cpu-independent=1",
        }
        for rgb in render_frames(spec):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)
    return path


def write_corpus(out_dir: Path, count: int, seed: int = 0, workers: int = 1, **spec_kwargs: float) -> list[Path]:
    """Writes ``count`` videos named video_<seed>.mp4; existing files are kept (content-addressed
    by seed and spec in the name), so re-runs reuse them. ``workers`` > 1 encodes the missing ones in
    that many processes (x264 runs single-threaded for reproducible bytes: processes are the speed-up;
    the bytes are the same either way)."""
    specs = [VideoSpec(seed=seed + i, **spec_kwargs) for i in range(count)]  # type: ignore[arg-type]
    paths = [out_dir / f"video_s{s.seed}_{s.width}x{s.height}_{s.fps}fps_{s.seconds:g}s.mp4" for s in specs]
    missing = [(path, spec) for path, spec in zip(paths, specs, strict=True) if not path.exists()]
    if workers > 1 and len(missing) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(missing))) as pool:
            list(pool.map(write_video, *zip(*missing, strict=True)))
    else:
        for path, spec in missing:
            write_video(path, spec)
    return paths
