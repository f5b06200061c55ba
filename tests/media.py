"""Real media files for tests: procedural videos and every kind of bad input, made with FFmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mvp.common.procedural import write_corpus


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=120)


def good_videos(folder: Path, count: int, seconds: float = 16, seed: int = 0) -> list[Path]:
    return write_corpus(folder, count, seed=seed, seconds=seconds, width=160, height=96, fps=10)


def bad_inputs(folder: Path, good: Path) -> dict[str, Path]:
    """name -> file, for each kind of unusable input (the name says what to expect)."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["empty"] = folder / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["text"] = folder / "notes.mp4"
    files["text"].write_text("this is not a video\n" * 20)
    files["corrupt"] = folder / "corrupt.mp4"
    data = bytearray(good.read_bytes())
    for i in range(64, len(data), 97):
        data[i] = (data[i] * 31 + 7) % 256
    files["corrupt"].write_bytes(bytes(data))
    files["truncated"] = folder / "truncated.mp4"
    files["truncated"].write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    files["audio_only"] = folder / "audio.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-c:a", "aac", str(files["audio_only"]))
    files["too_short"] = folder / "short.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "mandelbrot=size=160x96:rate=10", "-t", "3", "-pix_fmt", "yuv420p", str(files["too_short"])
    )
    return files


def rotated_and_vfr(folder: Path, good: Path) -> dict[str, Path]:
    """Valid but unusual videos: rotation metadata, variable frame rate, large frames."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"rotated": folder / "rotated.mp4", "vfr": folder / "vfr.mkv"}
    ffmpeg("-i", str(good), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(files["rotated"]))
    # drop frames irregularly and keep original timestamps -> variable frame rate
    ffmpeg(
        "-i",
        str(good),
        "-vf",
        "select='not(mod(n\\,3))+not(mod(n\\,7))'",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        str(files["vfr"]),
    )
    return files


def mvp_predict(port: int, uris: list[str], sample_id: str = "s1", timeout: float = 120) -> dict:
    """POSTs a two-context, two-candidate MVP sample over ``uris`` (four frames) to
    /v1/mvp/predict of an `mvp serve` on ``port``; returns the JSON answer."""
    import json
    import urllib.request

    sample = {
        "id": sample_id,
        "prompt": "Frame 1: <image>\n[GAP]\nFrame 2: <image>\nCandidate 1: <image>\nCandidate 2: <image>",
        "context_frames": [{"uri": uris[0]}, {"uri": uris[1]}],
        "candidates": [{"uri": uris[2]}, {"uri": uris[3]}],
        "label": {"answer": [2], "num_candidates": 2, "index_base": 1},
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/mvp/predict",
        data=json.dumps({"sample": sample}).encode(),
        headers={"Content-Type": "application/json"},
    )
    return json.loads(urllib.request.urlopen(request, timeout=timeout).read())


def procedural_examples(folder: Path, seed: int) -> list:
    """Training examples (frames loaded) from a small real corpus job on two procedural videos:
    N=5, K=2, l=2, two samples per video; written under ``folder``, no store involved."""
    from mvp.common.settings import StoreSettings
    from mvp.common.storage import Storage
    from mvp.common.synth_config import SynthConfig
    from mvp.synth.corpus import run_corpus
    from mvp.trainer.data import load_examples

    write_corpus(folder / "videos", 2, seed=seed, seconds=12)
    config = SynthConfig(num_frames=5, num_masked=2, num_distractors=2, samples_per_video=2)
    run_corpus(StoreSettings(), str(folder / "videos"), str(folder / "samples"), config, workers=1)
    return load_examples(Storage(), str(folder / "samples" / "samples.jsonl"))
