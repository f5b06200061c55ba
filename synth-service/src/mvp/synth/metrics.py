"""Prometheus metrics of the synth-service (documented in docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from mvp.v1 import synthesis_pb2

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

VIDEOS = Counter("mvp_synth_videos_total", "Videos finished, by status and reason code.", ["status", "reason"])
FRAMES = Counter("mvp_synth_frames_decoded_total", "Frames decoded at the sampling fps.")
SAMPLES = Counter("mvp_synth_samples_written_total", "Samples written and committed.")
DECODE_SECONDS = Histogram("mvp_synth_decode_seconds", "Decode time per video.", buckets=_SECONDS)
VIDEO_SECONDS = Histogram(
    "mvp_synth_video_seconds", "End-to-end time per video (read, decode, synthesise, write).", buckets=_SECONDS
)
QUEUE_DEPTH = Gauge("mvp_synth_queue_depth", "Videos waiting or in progress across running jobs.")
JOBS = Gauge("mvp_synth_jobs", "Corpus jobs known to this replica, by state.", ["state"])

_NAMES = {
    synthesis_pb2.VIDEO_STATUS_OK: "ok",
    synthesis_pb2.VIDEO_STATUS_SKIPPED: "skipped",
    synthesis_pb2.VIDEO_STATUS_FAILED: "failed",
}


def record_video(result: synthesis_pb2.VideoResult) -> None:
    VIDEOS.labels(_NAMES.get(result.status, "unknown"), result.reason_code or "").inc()
    FRAMES.inc(result.frames_decoded)
    SAMPLES.inc(result.num_samples)
    if result.frames_decoded:
        DECODE_SECONDS.observe(result.decode_seconds)
    VIDEO_SECONDS.observe(result.seconds)
