"""`mvp data synth-videos`: the procedural video corpus (real mp4 files)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mvp.common.geometry import FRAME_SIZE


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    videos = sub.add_parser(
        "synth-videos",
        help="write procedural videos (motion, growth, occlusion, camera pan)",
        description="Write H.264 mp4 videos whose temporal order is inferable only from dynamics "
        "(no text, clocks or counters). Same seed = same video; existing files are reused.",
    )
    videos.add_argument("--out", type=Path, required=True, help="output folder")
    videos.add_argument("--count", type=int, default=10)
    videos.add_argument("--seed", type=int, default=0, help="seed of the first video (video i uses seed+i)")
    videos.add_argument("--seconds", type=float, default=20.0)
    videos.add_argument("--width", type=int, default=FRAME_SIZE[0])
    videos.add_argument("--height", type=int, default=FRAME_SIZE[1])
    videos.add_argument("--fps", type=int, default=25)
    videos.set_defaults(func=_videos)


def _videos(args: argparse.Namespace) -> int:
    from mvp.common.procedural import write_corpus
    from mvp.common.progress import progress

    bar = progress(total=args.count, unit="video", desc="rendering")
    for i in range(args.count):
        (path,) = write_corpus(
            args.out, 1, seed=args.seed + i, seconds=args.seconds, width=args.width, height=args.height, fps=args.fps
        )
        print(path)
        bar.update(1)
    bar.close()
    return 0
