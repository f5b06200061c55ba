"""The alignment tasks: what mvp-smol is taught to answer before it ever sees an MVP question.

Every task is labelled by the procedural generator, answers in the project's answer format
(``<answer>3, 1</answer>``) and is never an MVP answer nor a gap question:

- ``other`` / ``same``: frame matching. K reference frames in a random order and a shuffled pool
  holding exact copies of them among l other frames (of other videos, or of the same video); the
  answer names each reference's copy.
- ``near``: the same, but the answer is the frame filmed one second before or after each reference
  (distractors >= 3 s from every reference).
- ``close``: ``near`` with distractors as close as 2 s to a reference: the answer is 1 s away, a
  distractor may be 2 s away (the distances of MVP's hardest negatives), so telling them apart needs
  the finer visual comparison.
- ``where`` (scene fact): one frame; which sixth of the picture (2 rows x 3 columns, the visual
  tokens' own grid) holds a named object ("the green square").
- ``motion`` (scene fact): two frames of a video, the second filmed 1-2 s after the first (said in
  the prompt, so nothing asks for temporal order); which way a named object moved: left, right, up
  or down.

The scene facts come from ``mvp.common.procedural.scene_objects``, the generator's own record of
each object's shape, colour, centre and visible share.
"""

from __future__ import annotations

import colorsys
import itertools
import random
from dataclasses import dataclass

from mvp.common.geometry import FRAME_SIZE
from mvp.common.procedural import SceneObject
from mvp.common.sample import render_prompt as render_mvp_prompt

MATCH_KINDS = ("other", "same", "near", "close", "pick", "mvp")
MVP_NEIGHBOURHOOD_S = 8  # an 'mvp' stage's distractors: frames within this many seconds of the gap (synth's levels)
FACT_KINDS = ("where", "motion")
STAGE_KINDS = MATCH_KINDS + FACT_KINDS
NEAR_MIN_DISTANCE = 3  # seconds between a 'near' stage's distractors (and other references) and each reference
CLOSE_MIN_DISTANCE = 2  # the same for a 'close' stage
DISTRACTOR_DISTANCE = {"near": NEAR_MIN_DISTANCE, "close": CLOSE_MIN_DISTANCE}  # the neighbour-finding kinds

# {video: [objects of frame 0, objects of frame 1, ...]} at 1 frame per second
Objects = dict[int, list[list[SceneObject]]]


def render_prompt(k: int, num_candidates: int, near: bool = False, about: int | None = None) -> str:
    """The matching question over K references; ``about`` (1-based) asks about that reference only,
    with one candidate number as the answer."""
    lines = [f"Here are {k} reference frame{'s' if k > 1 else ''} from videos, in no particular order."]
    lines += [f"Reference {i + 1}: <image>" for i in range(k)]
    lines.append("Candidates:")
    lines += [f"Candidate {i + 1}: <image>" for i in range(num_candidates)]
    question = "was filmed one second before or after" if near else "is an exact copy of"
    if about is not None:
        lines.append(f"Which candidate {question} Reference {about}? Give the candidate number as <answer>c1</answer>.")
        return "\n".join(lines)
    refs = "each reference frame" if k > 1 else "the reference frame"
    placeholders = ", ".join(f"c{j + 1}" for j in range(k))
    lines.append(
        f"Which candidate {question} {refs}? Give the candidate numbers in the order of the "
        f"references as <answer>{placeholders}</answer>."
    )
    return "\n".join(lines)


@dataclass
class AlignSample:
    prompt: str
    frames: list[tuple[int, int]]  # (video, frame) per <image>, in order
    answer: list[int]  # 1-based candidate numbers
    k: int
    num_candidates: int


def make_sample(
    rng: random.Random,
    videos: list[int],
    frames_per_video: int,
    k: int,
    n_distract: int,
    where: str,
    objects: Objects | None = None,
) -> AlignSample:
    """One training or held-out sample of a curriculum stage; the scene-fact kinds need ``objects``
    (the generator's ground truth per video and frame)."""
    if where in FACT_KINDS:
        if objects is None:
            raise ValueError(f"a {where!r} sample needs the videos' scene objects")
        return (where_sample if where == "where" else motion_sample)(rng, videos, objects)
    video = rng.choice(videos)
    if where in DISTRACTOR_DISTANCE:
        return _near_sample(rng, video, frames_per_video, k, n_distract, DISTRACTOR_DISTANCE[where])
    if where == "pick":
        return _pick_sample(rng, video, frames_per_video, k, n_distract)
    if where == "mvp":
        return _mvp_sample(rng, video, frames_per_video, k, n_distract)
    refs = [(video, f) for f in rng.sample(range(frames_per_video), k)]
    if where == "same":
        others = [f for f in range(frames_per_video) if (video, f) not in refs]
        distractors = [(video, f) for f in rng.sample(others, n_distract)]
    else:
        pool = [v for v in videos if v != video]
        distractors = [(v, rng.randrange(frames_per_video)) for v in rng.sample(pool, n_distract)]
    candidates = refs + distractors
    rng.shuffle(candidates)
    answer = [candidates.index(r) + 1 for r in refs]
    return AlignSample(render_prompt(k, len(candidates)), refs + candidates, answer, k, len(candidates))


def _near_sample(
    rng: random.Random, video: int, frames_per_video: int, k: int, n_distract: int, gap: int = NEAR_MIN_DISTANCE
) -> AlignSample:
    """K references >= NEAR_MIN_DISTANCE s apart (so no two share a neighbour); each one's answer is
    the frame one second before or after it; distractors are frames of the same video >= ``gap`` s
    from every reference."""
    for _ in range(1000):
        refs = sorted(rng.sample(range(frames_per_video), k))
        if all(b - a >= NEAR_MIN_DISTANCE for a, b in itertools.pairwise(refs)):
            break
    else:
        raise ValueError(f"a {frames_per_video}-frame video cannot hold {k} references {NEAR_MIN_DISTANCE} s apart")
    rng.shuffle(refs)
    neighbours = [f + 1 if f == 0 or (f + 1 < frames_per_video and rng.random() < 0.5) else f - 1 for f in refs]
    others = [f for f in range(frames_per_video) if all(abs(f - r) >= gap for r in refs)]
    if len(others) < n_distract:
        raise ValueError(f"near stage: only {len(others)} frames of {frames_per_video} can be distractors for K={k}")
    candidates = [(video, f) for f in neighbours + rng.sample(others, n_distract)]
    rng.shuffle(candidates)
    answer = [candidates.index((video, f)) + 1 for f in neighbours]
    prompt = render_prompt(k, len(candidates), near=True)
    return AlignSample(prompt, [(video, f) for f in refs] + candidates, answer, k, len(candidates))


def _mvp_sample(rng: random.Random, video: int, frames_per_video: int, k: int, n_distract: int) -> AlignSample:
    """The MVP question itself (``mvp.common.sample.render_prompt``, as synth writes it): one frame
    before the gap, K masked consecutive frames, one after (1 FPS), and ``n_distract`` distractors
    drawn uniformly from the same video within MVP_NEIGHBOURHOOD_S of the gap, never a context or gap
    frame. The answer: the masked frames' candidate numbers in temporal order."""
    start = rng.randrange(frames_per_video - k - 1)
    context = [start, start + k + 1]
    gap = list(range(start + 1, start + k + 1))
    near = [
        f
        for f in range(frames_per_video)
        if not start <= f <= start + k + 1 and min(abs(f - g) for g in gap) <= MVP_NEIGHBOURHOOD_S
    ]
    if len(near) < n_distract:
        raise ValueError(
            f"mvp stage: only {len(near)} frames within {MVP_NEIGHBOURHOOD_S} s of the gap for l={n_distract}"
        )
    candidates = gap + rng.sample(near, n_distract)
    rng.shuffle(candidates)
    answer = [candidates.index(f) + 1 for f in gap]
    prompt = render_mvp_prompt(1, 1, k, len(candidates), 1)
    frames = [(video, f) for f in context + candidates]
    return AlignSample(prompt, frames, answer, k, len(candidates))


def _pick_sample(rng: random.Random, video: int, frames_per_video: int, k: int, n_distract: int) -> AlignSample:
    """A 'close' sample whose question names one of the K references: "which candidate was filmed one
    second before or after Reference j?". Every reference's neighbour is a candidate, so the other
    references' neighbours are the hard distractors and which reference to compare with is the whole
    question (one index answered; chance 1 / (K + l))."""
    near = _near_sample(rng, video, frames_per_video, k, n_distract, CLOSE_MIN_DISTANCE)
    j = rng.randrange(k)
    prompt = render_prompt(k, near.num_candidates, near=True, about=j + 1)
    return AlignSample(prompt, near.frames, [near.answer[j]], 1, near.num_candidates)


# --- scene facts -------------------------------------------------------------------------------

HUES = (
    ("red", 0),
    ("orange", 30),
    ("yellow", 60),
    ("green", 120),
    ("cyan", 180),
    ("blue", 225),
    ("purple", 275),
    ("pink", 330),
)
WHERE_OPTIONS = ("top left", "top middle", "top right", "bottom left", "bottom middle", "bottom right")
MOTION_OPTIONS = ("left", "right", "up", "down")
MIN_VISIBLE = 0.6  # an object is asked about only if at least this share of it is in view
MIN_SATURATION = 0.3  # below this a colour has no clear name
MAX_HUE_OFF = 18  # degrees from a named hue's centre; farther colours are not named
WHERE_MARGIN = 0.06  # centre at least this share of the frame from a region border
MOTION_MIN_PX = 20  # the dominant displacement, in pixels of a 320-px-wide frame
MOTION_DOMINANCE = 2.0  # and at least this many times the other axis's
MAX_TRIES = 500


def colour_name(rgb: tuple[int, int, int]) -> str | None:
    """The hue's name when it has a clear one (saturated, near one of eight hue centres), else None."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    if s < MIN_SATURATION or v < 0.25:
        return None
    degrees = h * 360
    for name, centre in HUES:
        if abs((degrees - centre + 180) % 360 - 180) <= MAX_HUE_OFF:
            return name
    return None


def _describable(frames: list[list[SceneObject]]) -> dict[int, str]:
    """Objects of a video that one phrase names unambiguously: ``{index: "the green square"}`` for
    every object whose colour has a name no other object of the same shape shares."""
    first = frames[0]
    names = {o.index: colour_name(o.color) for o in first}
    out = {}
    for o in first:
        name = names[o.index]
        if name and sum(names[p.index] == name and p.shape == o.shape for p in first) == 1:
            out[o.index] = f"the {name} {o.shape}"
    return out


def _options(options: tuple[str, ...]) -> str:
    return ", ".join(f"{i + 1}: {text}" for i, text in enumerate(options))


def where_sample(rng: random.Random, videos: list[int], objects: Objects) -> AlignSample:
    """One frame; the answer is the region (of 2 x 3) that holds a named object's centre."""
    w, h = FRAME_SIZE
    for _ in range(MAX_TRIES):
        video = rng.choice(videos)
        names = _describable(objects[video])
        if not names:
            continue
        frame = rng.randrange(len(objects[video]))
        index = rng.choice(sorted(names))
        o = objects[video][frame][index]
        col, row = o.x / w * 3, o.y / h * 2  # in region units
        # distance to the nearest region line (frame edges included), as a share of the frame
        near_border = min(abs(col - round(col)) / 3, abs(row - round(row)) / 2) < WHERE_MARGIN
        if o.visible < MIN_VISIBLE or near_border:
            continue
        answer = int(row) * 3 + int(col) + 1
        prompt = (
            f"Here is a frame from a video.\nFrame: <image>\nWhere is {names[index]} in this frame? "
            f"{_options(WHERE_OPTIONS)}. Give the number as <answer>n</answer>."
        )
        return AlignSample(prompt, [(video, frame)], [answer], 1, len(WHERE_OPTIONS))
    raise ValueError("no object of these videos can be asked about (where)")


def motion_sample(rng: random.Random, videos: list[int], objects: Objects) -> AlignSample:
    """Two frames, the second 1-2 s after the first (as the prompt says); the answer is the way a
    named object moved between them, when one direction clearly dominates."""
    for _ in range(MAX_TRIES):
        video = rng.choice(videos)
        names = _describable(objects[video])
        if not names:
            continue
        dt = rng.choice((1, 2))
        first = rng.randrange(len(objects[video]) - dt)
        index = rng.choice(sorted(names))
        a, b = objects[video][first][index], objects[video][first + dt][index]
        dx, dy = b.x - a.x, b.y - a.y
        big, small = (abs(dx), abs(dy)) if abs(dx) >= abs(dy) else (abs(dy), abs(dx))
        if min(a.visible, b.visible) < MIN_VISIBLE or big < MOTION_MIN_PX or big < MOTION_DOMINANCE * small:
            continue
        answer = (1 if dx < 0 else 2) if abs(dx) >= abs(dy) else (3 if dy < 0 else 4)  # MOTION_OPTIONS
        seconds = f"{dt} second{'s' if dt > 1 else ''}"
        prompt = (
            f"Here are two frames from a video; the second was filmed {seconds} after the first.\n"
            f"First frame: <image>\nSecond frame: <image>\nWhich way did {names[index]} move between them? "
            f"{_options(MOTION_OPTIONS)}. Give the number as <answer>n</answer>."
        )
        return AlignSample(prompt, [(video, first), (video, first + dt)], [answer], 1, len(MOTION_OPTIONS))
    raise ValueError("no object of these videos can be asked about (motion)")
