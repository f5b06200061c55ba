"""Video decoding shared by synth-service (sampling key frames) and inference (video URLs): frames at a
fixed sampling rate with FFmpeg (PyAV), downscaled once to the stored size; failures with a stable
reason code (reported in job status, summary and metrics). Needs the ``video`` extra (PyAV, numpy)."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np


class VideoError(Exception):
    """A video could not be turned into samples. ``skip`` marks readable-but-unusable videos."""

    SKIP_CODES = frozenset({"too_short", "not_enough_distractors"})

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason

    @property
    def skip(self) -> bool:
        return self.code in self.SKIP_CODES


@dataclass(frozen=True)
class DecodedFrame:
    index: int  # among sampled frames
    timestamp_s: float
    rgb: np.ndarray  # HxWx3 uint8, longest side = image_size


def _target_size(width: int, height: int, longest: int) -> tuple[int, int]:
    scale = min(1.0, longest / max(width, height))
    # even sizes: some encoders and swscale paths dislike odd dimensions
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


def decode_at_fps(
    data: bytes,
    fps: float,
    image_size: int,
    max_pixels: int,
    max_frames: int,
    on_frame: Callable[[], None] | None = None,
) -> list[DecodedFrame]:
    """Returns the first decoded frame at or after each multiple of 1/fps seconds.

    Only sampled frames are converted and scaled (once, to ``image_size``); the rest are decoded
    and dropped. Raises VideoError with a reason code for every kind of unusable input. ``on_frame``
    is called for every decoded frame, sampled or not; a VideoError it raises (a frame or time
    budget spent) ends the decoding and propagates."""
    if not data:
        raise VideoError("empty_file", "the file is empty (0 bytes)")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError) as exc:
        reason = f"FFmpeg cannot open it (not a media file, or a truncated/corrupt container): {exc}"
        raise VideoError("not_a_video", reason) from None
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no"]
            raise VideoError("no_video_stream", f"the file has {'/'.join(kinds)} streams but no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        ctx = stream.codec_context
        if ctx.width and ctx.height and ctx.width * ctx.height > max_pixels:
            raise VideoError("resolution_too_large", f"{ctx.width}x{ctx.height} exceeds max_pixels={max_pixels}")
        time_base = float(stream.time_base) if stream.time_base else None
        frames: list[DecodedFrame] = []
        next_t = 0.0
        step = 1.0 / fps
        size: tuple[int, int] | None = None
        try:
            for frame in container.decode(stream):
                if on_frame is not None:
                    on_frame()
                if frame.pts is None or time_base is None:
                    t = frame.time if frame.time is not None else len(frames) * step
                else:
                    t = frame.pts * time_base
                if t + 1e-6 < next_t:
                    continue
                if size is None:
                    if frame.width * frame.height > max_pixels:
                        raise VideoError(
                            "resolution_too_large", f"{frame.width}x{frame.height} exceeds max_pixels={max_pixels}"
                        )
                    size = _target_size(frame.width, frame.height, image_size)
                rgb = frame.reformat(width=size[0], height=size[1], format="rgb24").to_ndarray()
                turns = (getattr(frame, "rotation", 0) or 0) // 90 % 4
                if turns:  # display-matrix rotation, applied as FFmpeg's autorotate does
                    rgb = np.ascontiguousarray(np.rot90(rgb, turns))
                frames.append(DecodedFrame(len(frames), round(t, 6), rgb))
                next_t = (int(t / step + 1e-6) + 1) * step
                if len(frames) >= max_frames:
                    break
        except (av.error.FFmpegError, AttributeError, ValueError) as exc:
            # Corrupt data surfaces as FFmpeg errors or as frames PyAV cannot describe.
            if not frames:
                raise VideoError("decode_error", f"decoding failed before the first frame: {exc!r}") from None
            # A corrupt or truncated tail: keep what decoded cleanly; planning decides if it is enough.
        if not frames:
            raise VideoError("no_frames", "the video stream decoded to zero frames")
        return frames
