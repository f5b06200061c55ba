"""The main job's report: report.md and index.html with config, stage timings, synthesis
statistics, metrics (when the training stages ran) and sample sheets."""

from __future__ import annotations

import dataclasses
import html
import json
import math
from pathlib import Path
from statistics import mean
from typing import TYPE_CHECKING

from mvp.common.sheet import render_sheet
from mvp.common.storage import Storage

if TYPE_CHECKING:
    from mvp.pipeline.state import RunState


def _samples(storage: Storage, uri: str) -> list[dict]:
    text = storage.get_bytes(uri).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _chance(state: RunState) -> float:
    """Chance exact of the run's own task (its held-out set's, else its training set's)."""
    own = [s for s in state.sample_sets if s.name in ("heldout", "train")]
    return own[-1].chance_exact if own else math.nan


def machine_readable(state: RunState) -> dict:
    """The report's facts as JSON (report.json), for scripts and benchmarks."""
    checkpoint = state.checkpoint
    artifacts = {f"predictions_{e.name}": str(e.predictions) for e in state.evaluations}
    if checkpoint:
        artifacts.update(checkpoint=checkpoint.uri, curves=checkpoint.curves)
    if state.report:
        artifacts["report"] = str(state.report)
    return {
        "config": state.config.model_dump(mode="json"),
        "stages": [
            {"name": s.name, "status": s.status, "seconds": s.seconds, "detail": s.detail} for s in state.stages
        ],
        "splits": {s.name: s.as_json() for s in state.sample_sets},
        "chance_exact": _chance(state),
        "evals": {e.name: {"task": e.task, **e.metrics} for e in state.evaluations},
        "gains": {g.task: {"exact": g.exact, "reward": g.reward} for g in state.gains},
        "transfer": state.transfer,
        "served": dataclasses.asdict(state.served) if state.served else {},
        "training": checkpoint.facts if checkpoint else {},
        "models_loaded": state.models_loaded,
        "artifacts": artifacts,
    }


def write_report(state: RunState, storage: Storage, folder: Path, sheets: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    md = ["# MVP-Train run report", ""]
    md += ["## Stages", "", "| # | stage | status | seconds | detail |", "|---|---|---|---|---|"]
    for i, s in enumerate(state.stages, 1):
        detail = s.detail.replace("\n", " ").replace("|", "/")[:200]
        if s.name == "report" and s.status == "ok":
            detail = detail or "this report"
        md.append(f"| {i} | {s.name} | {s.status} | {s.seconds:.1f} | {detail} |")
    md += ["", "## Synthesis", ""]
    sheet_files: list[str] = []
    md += _synthesis(state, storage, folder, sheets, sheet_files)
    md += ["", "## Held-out metrics", ""]
    md += _held_out(state) if state.evaluations else ["No held-out evaluation ran (see stages)."]
    if state.transfer:
        md += [
            "",
            "## Transfer probe (never trained on)",
            "",
            '"Are these 4 frames in playback order or reversed?" on unseen procedural clips and clips of '
            "FFmpeg's test sources, each forward and reversed (chance 0.5). Choice = the likelier of the two "
            "answers; greedy = the free answer, parsed.",
            "",
        ]
        keys = ("accuracy", "procedural_choice_accuracy", "ffmpeg_choice_accuracy", "chose_forward")
        md += _checkpoint_table(state.transfer, (*keys, "greedy_accuracy", "well_formed", "samples"))
    curves = state.checkpoint.curves if state.checkpoint else None
    if curves and Path(curves).exists():
        (folder / "curves.png").write_bytes(Path(curves).read_bytes())
        md += ["", "## Training curves", "", "![curves](curves.png)"]
    if state.served:
        s = state.served
        md += [
            "",
            "## Served model",
            "",
            f"Sample `{s.sample_id}` sent through the OpenAI-compatible API ({s.url}/v1/chat/completions): "
            f"answer `{s.answer}`, ground truth {s.ground_truth}, reward {s.reward:.3f}.",
        ]
    md += ["", "## Sample sheets", ""]
    md += [f"![{name}]({name})" for name in sheet_files]
    md += ["", "## Config", "", "```json", state.config.model_dump_json(indent=2), "```", ""]
    (folder / "report.md").write_text("\n".join(md))
    (folder / "report.json").write_text(json.dumps(machine_readable(state), indent=2, default=str))
    (folder / "index.html").write_text(_html(md))
    return folder / "index.html"


def _synthesis(state: RunState, storage: Storage, folder: Path, sheets: int, sheet_files: list[str]) -> list[str]:
    """Each sample set's task, chance and statistics; contact sheets of the first held-out samples."""
    md = [
        "| set (task) | chance exact | videos ok | skipped | failed | samples | mean distractor similarity "
        "| mean distance (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in state.sample_sets:
        samples = _samples(storage, s.uri)
        sims = [x.get("difficulty", {}).get("mean_similarity", 0.0) for x in samples]
        dists = [x.get("difficulty", {}).get("mean_distance_s", 0.0) for x in samples]
        stats = f"{mean(sims):.3f} | {mean(dists):.2f}" if samples else " | "
        md.append(
            f"| {s.name} ({s.task}) | {s.chance_exact:.4f} | {s.videos_ok} | {s.videos_skipped} | "
            f"{s.videos_failed} | {len(samples)} | {stats} |"
        )
        if s.name == "heldout" or len(state.sample_sets) == 1:
            for sample in samples[:sheets]:
                name = f"sheet_{sample['id']}.png"
                (folder / name).write_bytes(render_sheet(sample, storage.get_bytes, _served_answer(state, sample)))
                sheet_files.append(name)
    chance = _chance(state)
    return [f"The run's task: chance exact accuracy = {chance:.4f} (a uniformly random well-formed answer).", "", *md]


def _held_out(state: RunState) -> list[str]:
    evals = {e.name: {"task": e.task, **e.metrics} for e in state.evaluations}
    keys = ("task", "mean_reward", "exact", "exact_ci", "selection", "ordering", "format", "chance_exact", "samples")
    md = _checkpoint_table(evals, keys)
    md += ["", "Intervals: 95% bootstrap over the held-out samples; after - before paired on the same samples."]
    for g in state.gains:
        e, r = g.exact, g.reward
        md.append(
            f"- {g.task}: exact after - before {e['mean']:+.3f} (95% CI [{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]); "
            f"mean reward {r['mean']:+.3f} ([{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}])"
        )
    diag = {n: r["content_dependence"] for n, r in evals.items() if "content_dependence" in r}
    if diag:
        md += [
            "",
            "Does the answer follow the frames or the candidate numbers? The candidates shown again in an order "
            "that moves every one (follows frame / follows number: share of answered indices), and the "
            "information the first answer index carries about the prompt (nats, of log(candidates) possible).",
            "",
        ]
        md += _checkpoint_table(
            diag, ("follows_frame", "follows_number", "answer_information_nats", "top_answer", "top_answer_share")
        )
    files = [e.predictions.name for e in state.evaluations]
    md += ["", "Every held-out answer with its reward components: " + ", ".join(f"`{f}`" for f in files) + "."]
    return md


def _html(md_lines: list[str]) -> str:
    """A small, dependency-free rendering of the report's markdown subset (headings, tables,
    images, code blocks, paragraphs)."""
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>MVP-Train report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "img{max-width:100%;border:1px solid #ddd;margin:6px 0}pre{background:#f6f6f6;padding:1em}</style>",
        "</head><body>",
    ]
    in_code, in_table = False, False
    for line in md_lines:
        if line.startswith("```"):
            out.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            out.append(html.escape(line))
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                out.append("<table>")
                in_table = True
                out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>")
            else:
                out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            src = line[line.index("(") + 1 : -1]
            out.append(f"<img src='{html.escape(src)}' alt='{html.escape(src)}'>")
        elif line:
            out.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def _checkpoint_table(results: dict[str, dict], keys: tuple[str, ...]) -> list[str]:
    """A markdown table: one row per checkpoint (before, after), one column per key."""
    rows = ["| checkpoint | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    return rows + [f"| {name} | " + " | ".join(_num(r.get(k)) for k in keys) + " |" for name, r in results.items()]


def _num(value: object) -> str:
    if isinstance(value, list) and all(isinstance(v, float) for v in value):
        return "[" + ", ".join(f"{v:.3f}" for v in value) + "]"
    return f"{value:.3f}" if isinstance(value, float) else str(value).replace("|", "/")


def _served_answer(state: RunState, sample: dict) -> list[int] | None:
    """The served model's parsed answer for ``sample``, to mark on its sheet (None if not served)."""
    served = state.served
    if not served or served.sample_id != sample["id"]:
        return None
    from mvp.common.sample import parse_answer

    label = sample["label"]
    parsed = parse_answer(served.answer, len(label["answer"]), label["num_candidates"], label.get("index_base", 0))
    return parsed.indices or None
