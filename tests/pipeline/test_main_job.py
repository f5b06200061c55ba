"""`mvp run` end to end with small settings: every stage that exists, the report, the store's
contents, and no child process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.procs import MVP, REPO

pytestmark = pytest.mark.e2e


def children_of_run(out: Path) -> set[int]:
    """Processes started by the `mvp run` whose working folder is ``out`` (marked in their env)."""
    marker = f"MVP_SUPERVISED_BY={out.resolve() / 'logs'}".encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environ:
                pids.add(int(entry.name))
    return pids


@pytest.mark.slow
def test_main_job_small(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MVP_S3_ENDPOINT"}
    out = tmp_path / "run"
    args = [*MVP, "run", "--model", "tiny", "--videos", "4", "--video-seconds", "12", "--steps", "2", "--out", str(out)]
    args += ["--transfer-clips", "2"]
    # one extra training set from the same training videos: K=1 among 2 candidates; the evaluation
    # answers with the training's generation budget
    config = {"extra_train": [{"num_masked": 1, "num_distractors": 1}], "train": {"max_new_tokens": 6}}
    (tmp_path / "run.json").write_text(json.dumps(config))
    args += ["--config", str(tmp_path / "run.json")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "== [4] synthesis" in proc.stderr
    assert "chance_exact" in proc.stderr and "  after " in proc.stderr  # the before/after table
    assert "\r" not in proc.stderr, "progress bars drew carriage returns into a log (not a TTY)"
    assert len(proc.stderr) < 30_000, len(proc.stderr)
    report = (out / "report" / "report.md").read_text()
    stages = ("synthesis", "baseline eval", "training", "final eval", "transfer probe", "serve and query", "report")
    for stage in stages:
        assert f"| {stage} | ok |" in report, stage
    assert "| before |" in report and "| after |" in report
    assert "## Served model" in report
    assert (out / "report" / "curves.png").stat().st_size > 0
    assert "chance exact accuracy" in report
    assert list((out / "report").glob("sheet_*.png"))
    assert (out / "report" / "index.html").read_text().count("<img") >= 1
    facts = json.loads((out / "report" / "report.json").read_text())
    assert {"before", "after", "before (level 2)", "after (level 2)"} == set(facts["evals"])
    assert facts["chance_exact"] == 1 / 8 and facts["evals"]["after (level 2)"]["chance_exact"] == 1 / 72
    assert all(e["max_new_tokens"] == 6 for e in facts["evals"].values())
    # the base is read once (baseline eval, transfer "before", a copy is trained); the trained policy is
    # kept from training, never downloaded again from its checkpoint, for the final eval and "after"
    assert facts["models_loaded"] == ["tiny"]
    for name, result in facts["evals"].items():
        low, high = result["exact_ci"]
        assert low <= result["exact"] <= high, name
        assert 0 <= result["content_dependence"]["follows_frame"] <= 1
    gain = facts["gains"]["level 1"]["exact"]
    assert gain["ci"][0] <= gain["mean"] <= gain["ci"][1] and gain["samples"] == facts["evals"]["after"]["samples"]
    assert "exact after - before" in report and "follows_frame" in report
    assert [s["status"] for s in facts["stages"]] == ["ok"] * 10  # the report's own row included
    # every held-out answer is kept, and the per-sample records add up to the reported means
    for name in ("before", "after"):
        rows = [json.loads(x) for x in (out / "report" / f"predictions_{name}.jsonl").read_text().splitlines()]
        assert len(rows) == facts["evals"][name]["samples"] > 0
        assert len({r["sample_id"] for r in rows}) == len(rows)
        for key in ("exact", "selection", "format"):
            assert sum(r[key] for r in rows) / len(rows) == pytest.approx(facts["evals"][name][key])
        assert all(isinstance(r["completion"], str) and r["ground_truth"] for r in rows)
    for name in ("before", "after", "before_level_2", "after_level_2"):
        assert f"`predictions_{name}.jsonl`" in report
    # GRPO drew from both training sets; held-out samples follow synth alone
    splits = facts["splits"]
    assert splits["train-1"]["task"] == "N=3, K=1, l=1" and splits["train-1"]["samples"] > 0
    assert facts["training"]["train_samples"] == splits["train"]["samples"] + splits["train-1"]["samples"]
    assert "| train-1 (N=3, K=1, l=1) |" in report
    # the transfer probe: 2 procedural clips + 1 per FFmpeg test source, each forward and reversed
    assert facts["transfer"]["after"]["samples"] == 12 and 0 <= facts["transfer"]["after"]["accuracy"] <= 1
    assert "## Transfer probe (never trained on)" in report
    # the store writes through: corpus, samples and checkpoints are on disk
    store = out / "store" / "mvp"
    assert len(list((store / "corpus" / "train").glob("*.mp4"))) == 3
    assert len(list(store.glob("samples/*/heldout/openrlhf.jsonl"))) == 2  # level 1 and level 2
    assert len(list(store.glob("samples/*/train/samples.jsonl"))) == 2  # synth's and extra_train's
    assert list(store.glob("checkpoints/*/step-000002/model.safetensors"))
    assert children_of_run(out) == set(), "a child process survived mvp run"

    # a second run reuses the corpus and the samples (same content-addressed ids)
    first = sorted(p.read_text() for p in store.glob("samples/*/heldout/samples.jsonl"))
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "0 uploaded" in proc.stderr
    assert "resumed from step 2" in proc.stderr  # the finished training run is not redone
    assert sorted(p.read_text() for p in store.glob("samples/*/heldout/samples.jsonl")) == first


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_stops_every_child(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "MVP_S3_ENDPOINT"}
    proc = subprocess.Popen(
        [*MVP, "run", "--model", "tiny", "--videos", "4", "--video-seconds", "12", "--steps", "50", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
        # as started from a terminal: a background job (`make test &`) inherits SIGINT ignored, and
        # `mvp run` deliberately keeps it ignored then
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(children_of_run(out)) < 3:  # store, synth, reward
        time.sleep(0.2)
    assert len(children_of_run(out)) >= 3, "services did not start"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr
    assert children_of_run(out) == set()


@pytest.mark.slow
def test_failed_stage_names_itself_and_its_logs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "MVP_S3_ENDPOINT"}
    proc = subprocess.run(
        [*MVP, "run", "--input", "s3://no-such-bucket/videos/", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 1
    assert "stage 'synthesis' failed" in proc.stderr and "no-such-bucket" in proc.stderr
    assert str(out / "logs") in proc.stderr
    assert children_of_run(out) == set()
