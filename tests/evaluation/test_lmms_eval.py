"""LMMs-Eval's own code against `mvp serve` (issue #32): evaluation/run_lmms_eval.py runs LMMs-Eval
0.7.3 (`make lmms-eval`, its own venv) with its `openai` model on the repo's local tasks, and the
answers it logged are the ones the openai client gets from the same server for the same messages."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from openai import OpenAI

from tests.procs import REPO, start_serve

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]

LMMS_STAMP = REPO / ".venv-lmms" / ".installed"
RUNNER = REPO / "evaluation" / "run_lmms_eval.py"
UTILS = REPO / "evaluation" / "lmms_eval_tasks" / "mvp" / "utils.py"
KEY = "lmms-key"


def task_utils():
    spec = importlib.util.spec_from_file_location("mvp_lmms_utils", UTILS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    if not LMMS_STAMP.exists():
        pytest.fail(f"{LMMS_STAMP} missing: `make lmms-eval` installs LMMs-Eval into .venv-lmms (make test does)")
    tmp = tmp_path_factory.mktemp("lmms")
    server = start_serve(
        tmp, "--model", "smol", "--served-model-name", "mvp-smol", "--api-key", KEY, "--max-images", "12", timeout=300
    )
    base_url = f"http://127.0.0.1:{server.ports['http']}/v1"
    try:
        args = ["--base-url", base_url, "--model", "mvp-smol", "--api-key", KEY, "--work", str(tmp / "work")]
        proc = subprocess.run(
            [sys.executable, str(RUNNER), *args, "--clips", "1", "--videos", "1"],
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        yield summary, tmp / "work", OpenAI(base_url=base_url, api_key=KEY)
    finally:
        server.stop()


def test_lmms_eval_scores_both_local_tasks(run) -> None:
    summary, _, _ = run
    assert summary["docs"] == {"mvp_transfer": 10, "mvp_cloze": 2}  # (1 + 4 FFmpeg) clips x 2 directions
    for task in ("mvp_transfer", "mvp_cloze"):
        assert 0.0 <= summary[f"{task}_accuracy"] <= 1.0
        assert 0.0 <= summary[f"{task}_answered"] <= 1.0
    results = json.loads(Path(summary["results_json"]).read_text())
    assert set(results["results"]) >= {"mvp_transfer", "mvp_cloze"}


def test_lmms_eval_logged_what_the_server_answers(run) -> None:
    """Each answer LMMs-Eval logged is the server's greedy answer to the task's interleaved
    messages, asked again here with the openai client: LMMs-Eval's numbers are this server's."""
    summary, work, client = run
    utils = task_utils()
    logs = sorted(Path(summary["results_json"]).parent.glob("*_samples_mvp_*.jsonl"))
    assert len(logs) == 2, logs
    for log in logs:
        task = log.stem.split("_samples_")[1]
        docs = [json.loads(line) for line in (work / f"{task}.jsonl").read_text().splitlines()]
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            doc = docs[entry["doc_id"]]  # LMMs-Eval keeps the docs' order (datasets' json loader)
            logged = entry["filtered_resps"]
            logged = logged[0] if isinstance(logged, list) else logged
            parts = [
                {"type": "text", "text": p["text"]} if p["type"] == "text" else image_part(p["url"])
                for p in utils.doc_to_messages(doc)[0]["content"]
            ]
            messages = [{"role": "user", "content": parts}]
            answer = client.chat.completions.create(model="mvp-smol", messages=messages, max_tokens=8, temperature=0)
            assert answer.choices[0].message.content == logged, (doc["id"], logged)
            assert utils.process_results(doc, [logged])["accuracy"] == entry["accuracy"]


def image_part(image) -> dict:
    """An image as LMMs-Eval sends it (PNG, base64 data URL: its default LMMS_IMAGE_ENCODE_FORMAT)."""
    import base64
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"type": "image_url", "image_url": {"url": url}}
