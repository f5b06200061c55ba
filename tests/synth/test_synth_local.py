"""`mvp synth run` on real video files: statuses and reasons, sample properties, determinism."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mvp.reward.core import Label, RewardConfig, correct_completion, score
from tests.media import bad_inputs, good_videos, rotated_and_vfr
from tests.procs import MVP

pytestmark = pytest.mark.integration

ARGS = ["--num-frames", "6", "--num-masked", "2", "--num-distractors", "3", "--samples-per-video", "2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    good = good_videos(root / "good", 3)
    bad_inputs(root / "bad", good[0])
    rotated_and_vfr(root / "odd", good[1])
    return root


def synth_run(input_dir: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*MVP, "synth", "run", "--input", str(input_dir), "--output", str(output), *ARGS, *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def run_out(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out")
    proc = synth_run(corpus, out)
    assert proc.returncode == 0, proc.stderr
    return out


EXPECTED = {
    "empty.mp4": ("failed", "empty_file"),
    "notes.mp4": ("failed", "not_a_video"),
    "corrupt.mp4": ("failed", None),
    "truncated.mp4": ("failed", None),
    "audio.m4a": ("failed", "no_video_stream"),
    "short.mp4": ("skipped", "too_short"),
    "rotated.mp4": ("ok", None),
    "vfr.mkv": ("ok", None),
}


def test_summary_has_a_status_and_reason_per_input(run_out: Path) -> None:
    summary = json.loads((run_out / "summary.json").read_text())
    videos = {Path(v["uri"]).name: v for v in summary["videos"]}
    assert len(videos) == 11
    for name, (status, code) in EXPECTED.items():
        assert videos[name]["status"] == status, videos[name]
        if status != "ok":
            assert videos[name]["reason"], name
        if code:
            assert videos[name]["reason_code"] == code
    good = [v for n, v in videos.items() if n.startswith("video_")]
    assert all(v["status"] == "ok" and v["num_samples"] == 2 for v in good)
    assert summary["totals"]["samples"] == sum(v["num_samples"] for v in videos.values())


def test_openrlhf_rows(run_out: Path) -> None:
    rows = [json.loads(line) for line in (run_out / "openrlhf.jsonl").read_text().splitlines()]
    assert len(rows) == json.loads((run_out / "summary.json").read_text())["totals"]["samples"]
    for row in rows:
        assert set(row) >= {"prompt", "label", "images"}
        label = json.loads(row["label"])
        assert len(label["answer"]) == 2 and label["num_candidates"] == 5
        assert row["prompt"].count("<image>") == len(row["images"])
        assert all(Path(p).is_file() for p in row["images"])
        # the export's label is exactly what the reward reads; the canonical answer earns 1
        parsed = Label.from_json(row["label"])
        assert score(correct_completion(parsed), parsed, RewardConfig()).reward == 1.0
        # the prompt's format example never parses as an answer
        assert score(row["prompt"], parsed, RewardConfig()).failure_reason


def test_sample_properties(run_out: Path) -> None:
    samples = [json.loads(line) for line in (run_out / "samples.jsonl").read_text().splitlines()]
    assert samples
    for s in samples:
        label = s["label"]
        base = label.get("index_base", 0)
        cands = s["candidates"]
        ctx = s["context_frames"]
        k, n_pool = len(label["answer"]), len(cands)
        assert n_pool == k + 3
        idx = [c.get("source_index", 0) for c in cands]
        assert len(set(idx)) == n_pool, "duplicate frame in the pool"
        assert not set(idx) & {c.get("source_index", 0) for c in ctx}, "a context frame is a candidate"
        positives = [cands[a - base] for a in label["answer"]]
        pos_idx = [p.get("source_index", 0) for p in positives]
        assert pos_idx == sorted(pos_idx), "answer is not in temporal order"
        gap = s.get("gap_position", 0)
        before = [c.get("source_index", 0) for c in ctx[:gap]]
        after = [c.get("source_index", 0) for c in ctx[gap:]]
        assert before and after, "the gap must have context on both sides"
        assert max(before) < min(pos_idx) and max(pos_idx) < min(after), "masked run is not continuous"
        distractors = [i for i in idx if i not in pos_idx]
        assert all(d < max(before) or d > min(after) for d in distractors), "a distractor lies inside the gap"
        assert len({c["uri"].rsplit("/", 2)[0] for c in cands}) == 1
        assert s["source_uri"].endswith((".mp4", ".mkv"))
        diff = s["difficulty"]
        assert -1 <= diff.get("min_similarity", 0) <= diff.get("max_similarity", 0) < 0.97


def test_deterministic_and_resumable(corpus: Path, run_out: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert synth_run(corpus, again).returncode == 0
    first = (run_out / "samples.jsonl").read_text().replace(str(run_out), "OUT")
    second = (again / "samples.jsonl").read_text().replace(str(again), "OUT")
    assert first == second
    for frame in sorted((run_out / "frames").rglob("*.jpg"))[:20]:
        assert frame.read_bytes() == (again / frame.relative_to(run_out)).read_bytes()
    # a re-run reuses every committed video and changes nothing
    before = {p: p.stat().st_mtime_ns for p in (again / "manifests").iterdir()}
    assert synth_run(corpus, again).returncode == 0
    assert before == {p: p.stat().st_mtime_ns for p in (again / "manifests").iterdir()}
    # another seed gives other samples
    other = tmp_path / "other"
    assert synth_run(corpus / "good", other, "--seed", "7").returncode == 0
    ids = {json.loads(x)["id"] for x in (other / "samples.jsonl").read_text().splitlines()}
    assert ids.isdisjoint({json.loads(x)["id"] for x in first.splitlines()})


def test_conflicting_config_and_missing_input_fail_clearly(corpus: Path, run_out: Path, tmp_path: Path) -> None:
    proc = synth_run(corpus, run_out, "--seed", "99")
    assert proc.returncode != 0 and "another config" in proc.stderr
    proc = synth_run(tmp_path / "nope", tmp_path / "o")
    assert proc.returncode != 0 and "not found" in proc.stderr
    proc = subprocess.run(
        [
            *MVP,
            "synth",
            "run",
            "--input",
            str(corpus),
            "--output",
            str(tmp_path),
            "--num-frames",
            "3",
            "--num-masked",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "num_masked" in proc.stderr


def test_huge_resolution_is_refused_with_a_reason(corpus: Path, tmp_path: Path) -> None:
    """max_pixels guards decode memory; a 160x96 video against a 10,000-pixel limit stands in for
    an 8K video against the default limit (same code path, without an 8K encode in the test)."""
    proc = synth_run(corpus / "good", tmp_path / "o", "--max-pixels", "10000")
    assert proc.returncode == 0
    videos = json.loads((tmp_path / "o" / "summary.json").read_text())["videos"]
    assert {v["reason_code"] for v in videos} == {"resolution_too_large"}
    assert "160x96" in videos[0]["reason"]


def test_exports_load_with_hugging_face_datasets(run_out: Path) -> None:
    datasets = pytest.importorskip("datasets")
    samples = datasets.load_dataset("json", data_files=str(run_out / "samples.jsonl"), split="train")
    rows = datasets.load_dataset("json", data_files=str(run_out / "openrlhf.jsonl"), split="train")
    total = json.loads((run_out / "summary.json").read_text())["totals"]["samples"]
    assert len(samples) == len(rows) == total
    assert {"id", "prompt", "label", "candidates", "context_frames"} <= set(samples.column_names)
    assert set(rows.column_names) >= {"prompt", "label", "images"}
    assert json.loads(rows[0]["label"])["answer"] == samples[0]["label"]["answer"]
