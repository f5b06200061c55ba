"""The MVP synthesis algorithm, pure: decoded frames in, sample plans out (no I/O).

For each sample (seeded from the config's digest, the video's hash and the sample number):
1. de-duplicate: from a random start, walk forward keeping a frame only if its similarity to the
   last kept frame is below kappa, until N are kept;
2. mask a continuous run of K kept frames (not touching either end unless allowed);
3. draw l hard negatives from the same video: frames outside the gap within ``neighbourhood_s`` of
   it (uniformly at random, or nearest in time first), never near-duplicates of a positive or of
   each other, never a context frame;
4. shuffle positives and distractors into the pool; the answer is the positives' pool indices in
   temporal order.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import numpy as np

from mvp.common.sample import PROMPT_VERSION
from mvp.common.synth_config import SynthConfig
from mvp.common.video import VideoError


@dataclass(frozen=True)
class SamplePlan:
    """Which decoded frames make up one sample (indices into the decoded frame list)."""

    sample_id: str
    seed: int
    context: list[int]  # in temporal order
    gap_position: int  # context[:gap_position] come before the gap
    positives: list[int]  # the masked run, temporal order
    candidates: list[int]  # pool in display order
    answer: list[int]  # pool indices (with index_base) of the positives, temporal order
    distractor_similarity: list[float]  # each distractor's max similarity to a positive
    distractor_distance_s: list[float]


def derive_seed(config: SynthConfig, video_sha256: str, sample_number: int) -> int:
    """A sample's seed: a function of everything that makes it (the whole config through its digest,
    the base seed included, the video and the sample number), so two sample sets of the same videos
    under different configs (e.g. K=1 next to K=2) draw independent windows, not twins."""
    digest = hashlib.sha256(f"{config.digest()}:{video_sha256}:{sample_number}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def dedup_walk(sim: np.ndarray, start: int, kappa: float, n: int) -> list[int]:
    """Indices kept walking forward from ``start``: each below kappa similar to the last kept."""
    kept = [start]
    for j in range(start + 1, sim.shape[0]):
        if sim[kept[-1], j] < kappa:
            kept.append(j)
            if len(kept) == n:
                break
    return kept


def plan_samples(emb: np.ndarray, times: list[float], config: SynthConfig, video_sha256: str) -> list[SamplePlan]:
    """Plans ``samples_per_video`` samples. Raises VideoError(too_short / not_enough_distractors)
    when the video cannot give even one."""
    sim = emb @ emb.T
    total = emb.shape[0]
    n, k = config.num_frames, config.num_masked
    # Starts from which a walk reaches N kept frames (the walk is deterministic per start).
    walks: dict[int, list[int]] = {}
    for start in range(total):
        walk = dedup_walk(sim, start, config.kappa, n)
        if len(walk) == n:
            walks[start] = walk
        else:
            # A walk from a later start sees fewer frames; stop at the first that falls short
            # (keeps planning linear in practice rather than quadratic in video length).
            break
    if not walks:
        longest = len(dedup_walk(sim, 0, config.kappa, n))
        raise VideoError(
            "too_short",
            f"only {longest} de-duplicated frames (kappa={config.kappa}) from {total} decoded at "
            f"{config.fps} fps; need num_frames={n}",
        )
    plans: list[SamplePlan] = []
    seen: set[tuple[int, ...]] = set()
    last_error: VideoError | None = None
    for number in range(config.samples_per_video * 4):
        if len(plans) == config.samples_per_video:
            break
        seed = derive_seed(config, video_sha256, number)
        rng = random.Random(seed)
        kept = walks[rng.choice(sorted(walks))]
        lo = 0 if config.allow_edge_mask else 1
        hi = n - k if config.allow_edge_mask else n - k - 1
        gap = rng.randint(lo, hi)
        key = (*kept, gap)
        if key in seen:
            continue
        seen.add(key)
        positives = kept[gap : gap + k]
        context = kept[:gap] + kept[gap + k :]
        try:
            distractors, dsim, ddist = _pick_distractors(sim, times, kept, gap, positives, config, rng)
        except VideoError as exc:
            last_error = exc
            continue
        pool = positives + distractors
        order = list(range(len(pool)))
        rng.shuffle(order)
        candidates = [pool[i] for i in order]
        position = {frame: i for i, frame in enumerate(candidates)}
        answer = [position[p] + config.index_base for p in positives]
        sample_id = hashlib.sha256(f"{video_sha256}:{config.digest()}:{number}:{PROMPT_VERSION}".encode()).hexdigest()[
            :20
        ]
        plans.append(SamplePlan(sample_id, seed, context, gap, positives, candidates, answer, dsim, ddist))
    if not plans:
        raise last_error or VideoError("too_short", "no valid sample could be drawn")
    return plans


def _pick_distractors(
    sim: np.ndarray,
    times: list[float],
    kept: list[int],
    gap: int,
    positives: list[int],
    config: SynthConfig,
    rng: random.Random,
) -> tuple[list[int], list[float], list[float]]:
    l_needed = config.num_distractors
    if l_needed == 0:
        return [], [], []
    # Frames strictly between the context frames around the gap are "in the gap": excluded.
    before = kept[gap - 1] if gap > 0 else -1
    after = kept[gap + len(positives)] if gap + len(positives) < len(kept) else sim.shape[0]
    t0, t1 = times[positives[0]], times[positives[-1]]
    kept_set = set(kept)
    eligible = [i for i in range(sim.shape[0]) if i not in kept_set and not before < i < after]
    if not eligible:
        raise VideoError("not_enough_distractors", "no frame outside the gap and the context to use as a distractor")

    def distance(i: int) -> float:
        return max(t0 - times[i], times[i] - t1, 0.0)

    # uniform: a seeded random order; nearest: nearest in time first (hardest), ties broken by the
    # seeded rng. Either way only frames within the radius qualify, and the radius widens if needed.
    jitter = {i: rng.random() for i in eligible}
    if config.distractor_sampling == "nearest":
        ranked = sorted(eligible, key=lambda i: (distance(i), jitter[i]))
    else:
        ranked = sorted(eligible, key=lambda i: jitter[i])
    radius = config.neighbourhood_s
    chosen: list[int] = []
    while True:
        for i in ranked:
            if len(chosen) == l_needed:
                break
            if i in chosen or distance(i) > radius:
                continue
            if max(sim[i, p] for p in positives) >= config.max_distractor_similarity:
                continue
            if any(sim[i, c] >= config.max_distractor_similarity for c in chosen):
                continue
            chosen.append(i)
        if len(chosen) == l_needed or radius >= (times[-1] - times[0]) + 1:
            break
        radius *= 2
    if len(chosen) < l_needed:
        raise VideoError(
            "not_enough_distractors",
            f"found {len(chosen)} of {l_needed} distractors that are not near-duplicates "
            f"(max_distractor_similarity={config.max_distractor_similarity})",
        )
    dsim = [float(max(sim[i, p] for p in positives)) for i in chosen]
    return chosen, dsim, [distance(i) for i in chosen]
