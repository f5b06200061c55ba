"""One video -> its samples, written to storage and committed by one manifest write.

Layout under an output prefix (a local folder or s3://bucket/prefix):

    frames/<sample_id>/ctx_00.jpg ... cand_00.jpg ...   encoded frames
    samples/<video_key>.jsonl                            one mvp.v1.Sample (JSON) per line
    manifests/<video_key>.json                           the commit: VideoResult + sample ids

A video counts as done only when its manifest exists; frames or sample files without a manifest
are leftovers of a killed worker and are overwritten when the video is redone.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from dataclasses import dataclass

import numpy as np
from google.protobuf.json_format import MessageToDict
from PIL import Image

from mvp.common.sample import render_prompt
from mvp.common.storage import Storage, StorageError, join
from mvp.common.synth_config import SynthConfig
from mvp.common.video import VideoError, decode_at_fps
from mvp.synth.embed import get_embedder
from mvp.synth.pipeline import plan_samples
from mvp.v1 import sample_pb2, synthesis_pb2

log = logging.getLogger(__name__)
_EXT = {"jpeg": "jpg", "webp": "webp"}
_MIME = {"jpeg": "image/jpeg", "webp": "image/webp"}


def video_key(uri: str) -> str:
    """Stable name of a video's outputs, from its URI (known before reading the video)."""
    return hashlib.sha256(uri.encode()).hexdigest()[:24]


def manifest_uri(output: str, uri: str) -> str:
    return join(output, "manifests", f"{video_key(uri)}.json")


def encode_image(rgb: np.ndarray, config: SynthConfig) -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(rgb)
    if config.image_format == "jpeg":
        image.save(buf, format="JPEG", quality=config.image_quality, optimize=False, subsampling=0)
    else:
        image.save(buf, format="WEBP", quality=config.image_quality, method=4)
    return buf.getvalue()


def sample_to_json(sample: sample_pb2.Sample) -> str:
    return json.dumps(MessageToDict(sample, preserving_proto_field_name=True), sort_keys=True)


@dataclass
class VideoOutcome:
    result: synthesis_pb2.VideoResult
    samples: list[sample_pb2.Sample]


@dataclass(frozen=True)
class DecodeCeilings:
    """An operator's ceilings on decoding (synth-service's ``max_pixels`` and ``max_decoded_frames``):
    the lower of each and the config's own value applies. They are not part of the config, so the
    config's digest (which seeds and names the samples) does not depend on them."""

    max_pixels: int
    max_frames: int


def process_video(
    storage: Storage, uri: str, output: str, config: SynthConfig, ceilings: DecodeCeilings | None = None
) -> VideoOutcome:
    """Synthesises, writes and commits one video. Never raises for a bad video: the outcome says
    why it was skipped or failed. Storage errors on the output side do raise (nothing is
    committed then, so the video is redone on resume)."""
    max_pixels, max_frames = config.max_pixels, config.max_decoded_frames
    if ceilings is not None:
        max_pixels, max_frames = min(max_pixels, ceilings.max_pixels), min(max_frames, ceilings.max_frames)
    t0 = time.perf_counter()
    result = synthesis_pb2.VideoResult(uri=uri)
    samples: list[sample_pb2.Sample] = []
    plans: list = []
    try:
        # Input side: anything that goes wrong here is this video's problem, reported and skipped.
        try:
            data = storage.get_bytes(uri)
        except StorageError as exc:
            raise VideoError("read_error", f"cannot read the video: {exc}") from None
        sha = hashlib.sha256(data).hexdigest()
        t_decode = time.perf_counter()
        frames = decode_at_fps(data, config.fps, config.image_size, max_pixels, max_frames)
        result.decode_seconds = round(time.perf_counter() - t_decode, 4)
        result.frames_decoded = len(frames)
        emb = get_embedder(config.embedder)([f.rgb for f in frames])
        plans = plan_samples(emb, [f.timestamp_s for f in frames], config, sha)
    except VideoError as exc:
        result.status = synthesis_pb2.VIDEO_STATUS_SKIPPED if exc.skip else synthesis_pb2.VIDEO_STATUS_FAILED
        result.reason_code, result.reason = exc.code, exc.reason
    except Exception as exc:  # one bad input must never stop the corpus (logged with traceback)
        log.exception("unexpected error on a video", extra={"uri": uri})
        result.status = synthesis_pb2.VIDEO_STATUS_FAILED
        result.reason_code, result.reason = "internal_error", f"unexpected {type(exc).__name__}: {exc}"
    # Output side: a storage failure here is the run's problem and propagates.
    for plan in plans:
        samples.append(_write_sample(storage, output, uri, sha, plan, frames, config))
    if samples:
        lines = "".join(sample_to_json(s) + "\n" for s in samples)
        storage.put_bytes(join(output, "samples", f"{video_key(uri)}.jsonl"), lines.encode(), "application/x-ndjson")
        result.status = synthesis_pb2.VIDEO_STATUS_OK
        result.num_samples = len(samples)
    result.seconds = round(time.perf_counter() - t0, 4)
    commit(storage, output, uri, config, result, [s.id for s in samples])
    return VideoOutcome(result, samples)


def commit(
    storage: Storage,
    output: str,
    uri: str,
    config: SynthConfig,
    result: synthesis_pb2.VideoResult,
    sample_ids: list[str],
) -> None:
    """The one write that makes a video's outcome visible (atomic per object)."""
    manifest = {
        "uri": uri,
        "config_digest": config.digest(),
        "result": MessageToDict(result, preserving_proto_field_name=True),
        "sample_ids": sample_ids,
        "samples_uri": join(output, "samples", f"{video_key(uri)}.jsonl") if sample_ids else "",
    }
    storage.put_bytes(manifest_uri(output, uri), json.dumps(manifest, sort_keys=True).encode(), "application/json")


def _write_sample(
    storage: Storage, output: str, uri: str, sha: str, plan, frames, config: SynthConfig
) -> sample_pb2.Sample:
    ext = _EXT[config.image_format]
    base = join(output, "frames", plan.sample_id)

    def put(name: str, index: int) -> sample_pb2.Frame:
        target = join(base, f"{name}.{ext}")
        storage.put_bytes(target, encode_image(frames[index].rgb, config), _MIME[config.image_format])
        return sample_pb2.Frame(uri=target, timestamp_s=frames[index].timestamp_s, source_index=index)

    context = [put(f"ctx_{i:02d}", idx) for i, idx in enumerate(plan.context)]
    candidates = [put(f"cand_{i:02d}", idx) for i, idx in enumerate(plan.candidates)]
    times = [frames[i].timestamp_s for i in plan.candidates]
    label = sample_pb2.Label(
        answer=plan.answer,
        num_candidates=len(plan.candidates),
        index_base=config.index_base,
        candidate_times_s=times,
        gap_start_s=frames[plan.positives[0]].timestamp_s,
        gap_end_s=frames[plan.positives[-1]].timestamp_s,
    )
    dsim, ddist = plan.distractor_similarity, plan.distractor_distance_s
    difficulty = sample_pb2.Difficulty(
        min_similarity=min(dsim) if dsim else 0.0,
        mean_similarity=float(np.mean(dsim)) if dsim else 0.0,
        max_similarity=max(dsim) if dsim else 0.0,
        mean_distance_s=float(np.mean(ddist)) if ddist else 0.0,
    )
    prompt = render_prompt(
        plan.gap_position,
        len(plan.context) - plan.gap_position,
        len(plan.positives),
        len(plan.candidates),
        config.index_base,
    )
    return sample_pb2.Sample(
        id=plan.sample_id,
        source_uri=uri,
        source_sha256=sha,
        context_frames=context,
        gap_position=plan.gap_position,
        candidates=candidates,
        label=label,
        prompt=prompt,
        config=config.to_proto(),
        seed=plan.seed,
        difficulty=difficulty,
    )
