"""LMMs-Eval (its own code, in its own venv) against a served model, on MVP-Train's local tasks.

    python evaluation/run_lmms_eval.py --base-url http://127.0.0.1:8000/v1 --model mvp-smol \\
        --work .mvp/lmms-eval [--api-key KEY] [--clips 8] [--videos 4]

1. Writes the two tasks' docs into ``--work`` (once; kept for the next model, so that base and
   trained checkpoint answer the same questions):
   - ``mvp_transfer.jsonl``: the transfer probe's question (mvp.trainer.transfer: its clips, its
     frames) as multiple choice, each clip forward (A) and reversed (B);
   - ``mvp_cloze.jsonl``: MVP samples that `mvp synth run` makes of procedural videos encoded by
     FFmpeg (N=3, K=1, l=3: two context frames around the gap, four candidates A-D), as multiple choice.
2. Runs ``python -m lmms_eval --model openai`` from the LMMs-Eval venv (``make lmms-eval``) with
   ``--include_path evaluation/lmms_eval_tasks`` and the work folder as its working directory
   (the task files name their docs relative to it).
3. Prints LMMs-Eval's own results JSON for the two tasks, then a summary JSON line (last line).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TASKS = Path(__file__).resolve().parent / "lmms_eval_tasks"
LMMS_PYTHON = REPO / ".venv-lmms" / "bin" / "python"
LETTERS = "ABCDEFGH"


def _save(frame, path: Path) -> str:
    from PIL import Image

    image = frame if isinstance(frame, Image.Image) else Image.fromarray(frame)
    image.convert("RGB").save(path)
    return str(path.resolve())


def transfer_docs(folder: Path, clips: int) -> list[dict]:
    from mvp.trainer.transfer import clip_families

    docs = []
    for family, members in clip_families(procedural=clips, per_source=max(1, clips // 4)).items():
        for c, clip in enumerate(members):
            for direction, letter in (("forward", "A"), ("reversed", "B")):
                frames = clip if direction == "forward" else clip[::-1]
                paths = [_save(f, folder / f"transfer-{family}-{c}-{direction}-{i}.png") for i, f in enumerate(frames)]
                question = (
                    f"These {len(frames)} frames come from one video:\n"
                    + "".join(f"Frame {i + 1}: <image>\n" for i in range(len(frames)))
                    + "Are they shown in playback order, or reversed?\nA. Playback order\nB. Reversed"
                )
                docs.append(
                    {
                        "id": f"{family}-{c}-{direction}",
                        "family": family,
                        "question": question,
                        "images": paths,
                        "letters": ["A", "B"],
                        "answer": letter,
                    }
                )
    return docs


def cloze_docs(folder: Path, videos: int) -> list[dict]:
    """MVP samples of `mvp synth run` (the product's own synthesis) as multiple choice."""
    from mvp.common.procedural import write_corpus
    from mvp.common.seeds import LMMS_EVAL_CLOZE

    corpus = write_corpus(folder / "videos", videos, seed=LMMS_EVAL_CLOZE, seconds=16)
    out = folder / "synth"
    cmd = [sys.executable, "-m", "mvp.cli", "synth", "run", "--input", str(corpus[0].parent), "--output", str(out)]
    cmd += ["--num-frames", "3", "--num-masked", "1", "--num-distractors", "3", "--samples-per-video", "2"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    docs = []
    for line in (out / "samples.jsonl").read_text().splitlines():
        sample = json.loads(line)
        label = sample["label"]
        base = label.get("index_base", 1)
        context = [f["uri"] for f in sample["context_frames"]]
        candidates = [f["uri"] for f in sample["candidates"]]
        letters = list(LETTERS[: len(candidates)])
        before = sample["prompt"].split("[GAP")[0].count("<image>")  # context frames before the gap
        question = (
            "These are frames from one video, in temporal order. One frame is missing at the gap.\n"
            + "".join(f"Frame {i + 1}: <image>\n" for i in range(before))
            + "[GAP]\n"
            + "".join(f"Frame {i + 1}: <image>\n" for i in range(before, len(context)))
            + "Which candidate is the missing frame?\n"
            + "".join(f"{letter}. <image>\n" for letter in letters)
        ).rstrip("\n")
        docs.append(
            {
                "id": sample["id"],
                "family": "procedural",
                "question": question,
                "images": [str(Path(p).resolve()) for p in context + candidates],
                "letters": letters,
                "answer": letters[label["answer"][0] - base],
            }
        )
    return docs


def write_docs(work: Path, clips: int, videos: int) -> dict[str, int]:
    work.mkdir(parents=True, exist_ok=True)
    counts = {}
    for task, build in (
        ("mvp_transfer", lambda f: transfer_docs(f, clips)),
        ("mvp_cloze", lambda f: cloze_docs(f, videos)),
    ):
        target = work / f"{task}.jsonl"
        if not target.exists():
            frames = work / task
            frames.mkdir(exist_ok=True)
            docs = build(frames)
            target.write_text("".join(json.dumps(d) + "\n" for d in docs))
        counts[task] = len(target.read_text().splitlines())
    return counts


def run_lmms_eval(args: argparse.Namespace) -> Path:
    if not LMMS_PYTHON.exists():
        sys.exit(f"{LMMS_PYTHON} missing: `make lmms-eval` installs LMMs-Eval into .venv-lmms")
    output = args.work / "results" / args.model
    model_args = f"model_version={args.model},base_url={args.base_url},max_retries=2,num_concurrent=2,timeout=600"
    if args.api_key:
        model_args += f",api_key={args.api_key}"
    cmd = [str(LMMS_PYTHON), "-m", "lmms_eval", "--model", "openai", "--model_args", model_args]
    cmd += ["--tasks", "mvp_transfer,mvp_cloze", "--include_path", str(TASKS), "--batch_size", "1"]
    cmd += ["--log_samples", "--output_path", str(output)]
    from mvp.inference.vllm_backend import SHIM  # PyPI's CUDA-linked torchvision beside the CPU torch

    env = {
        **os.environ,
        "OPENAI_API_KEY": args.api_key or "unused",
        "HF_HUB_OFFLINE": "1",  # the tasks' docs are local files; nothing is downloaded
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SHIM), os.environ.get("PYTHONPATH", "")])),
    }
    subprocess.run(cmd, check=True, cwd=args.work, env=env, timeout=args.timeout_s)
    found = sorted(output.rglob("*_results.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        sys.exit(f"LMMs-Eval wrote no results JSON under {output}")
    return found[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="the server's OpenAI base URL (…/v1)")
    parser.add_argument("--model", required=True, help="its served model name (LMMs-Eval's model_version)")
    parser.add_argument("--api-key", default=None, help="the server's API key, if it requires one")
    parser.add_argument("--work", type=Path, default=REPO / ".mvp" / "lmms-eval", help="docs and results folder")
    parser.add_argument("--clips", type=int, default=8, help="procedural clips of the transfer task")
    parser.add_argument("--videos", type=int, default=4, help="videos of the cloze task (2 samples each)")
    parser.add_argument("--timeout-s", type=float, default=3600)
    args = parser.parse_args()
    args.work = args.work.resolve()
    t0 = time.perf_counter()
    counts = write_docs(args.work, args.clips, args.videos)
    t1 = time.perf_counter()
    results_path = run_lmms_eval(args)
    results = json.loads(results_path.read_text())
    print(json.dumps(results["results"], indent=1))
    summary = {
        "bench": "lmms_eval",
        "model": args.model,
        "docs": counts,
        **{
            f"{task}_{metric.split(',')[0]}": round(value, 4)
            for task, scores in results["results"].items()
            for metric, value in scores.items()
            if metric.endswith(",none") and isinstance(value, int | float)
        },
        "chance": {"mvp_transfer": 0.5, "mvp_cloze": 0.25},
        "lmms_eval_version": results.get("lmms_eval_version"),
        "results_json": str(results_path),
        "seconds": {"docs": round(t1 - t0, 1), "lmms_eval": round(time.perf_counter() - t1, 1)},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
