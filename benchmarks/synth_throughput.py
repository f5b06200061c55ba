"""Synthesis throughput vs. FFmpeg decoding the same files at 1 FPS.

Generates (or reuses, in benchmarks/.cache) a corpus of procedural H.264 videos, runs the full MVP
pipeline over it (decode, de-duplicate, mask, distractors, encode frames, write, commit, export),
and in the same run times `ffmpeg -threads 2 -i X -vf fps=1 -f null -` over every file. Prints
frames/s, samples/s, the wall-time ratio (ours / ffmpeg) and peak memory; the last line is JSON.

    python benchmarks/synth_throughput.py [--videos 10] [--seconds 60] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvp.common.procedural import write_corpus
from mvp.common.settings import StoreSettings
from mvp.common.synth_config import SynthConfig
from mvp.synth.corpus import run_corpus

CACHE = Path(__file__).resolve().parent / ".cache"


def ffmpeg_reference(paths: list[Path]) -> float:
    t0 = time.perf_counter()
    for path in paths:
        subprocess.run(
            ["ffmpeg", "-v", "error", "-threads", "2", "-i", str(path), "-vf", "fps=1", "-f", "null", "-"],
            check=True,
        )
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    t0 = time.perf_counter()
    paths = write_corpus(
        CACHE / "synth",
        args.videos,
        seed=1000,
        seconds=args.seconds,
        width=args.width,
        height=args.height,
        fps=args.fps,
    )
    print(f"corpus ready in {time.perf_counter() - t0:.1f}s: {len(paths)} videos", file=sys.stderr)
    input_dir = Path(tempfile.mkdtemp(prefix="synth-bench-in-"))
    for p in paths:
        (input_dir / p.name).symlink_to(p)

    ref = ffmpeg_reference(paths)
    print(f"ffmpeg -vf fps=1 decode: {ref:.2f}s", file=sys.stderr)

    config = SynthConfig()
    with tempfile.TemporaryDirectory(prefix="synth-bench-out-") as out:
        t0 = time.perf_counter()
        progress = run_corpus(StoreSettings(), str(input_dir), out, config, workers=args.workers)
        ours = time.perf_counter() - t0
    frames = sum(r.frames_decoded for r in progress.results)
    decode_s = sum(r.decode_seconds for r in progress.results)
    samples = progress.samples
    print(f"mvp synthesis: {ours:.2f}s, {frames} frames, {samples} samples", file=sys.stderr)
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "bench": "synth",
                "videos": len(paths),
                "video_seconds": args.seconds,
                "resolution": f"{args.width}x{args.height}@{args.fps}",
                "workers": args.workers,
                "wall_s": round(ours, 3),
                "ffmpeg_wall_s": round(ref, 3),
                "ratio_vs_ffmpeg": round(ours / ref, 3),
                "frames_per_s": round(frames / ours, 1),
                "samples_per_s": round(samples / ours, 2),
                "decode_cpu_share": round(decode_s / (ours * args.workers), 3),
                "samples": samples,
                "peak_rss_mb_main": round(peak_self, 1),
                "peak_rss_mb_worker": round(peak_children, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
