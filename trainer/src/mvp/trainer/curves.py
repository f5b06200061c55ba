"""Training curves: TensorBoard event files while training, a PNG and metrics.jsonl at the end."""

from __future__ import annotations

import json
from pathlib import Path

PANELS = (
    ("reward", ("reward",)),
    ("reward components", ("format", "selection", "ordering", "exact")),
    ("KL / entropy", ("kl", "entropy")),
    ("seconds per step", ("time_generate_s", "time_reward_s", "time_update_s")),
)


class CurveLogger:
    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(folder / "tensorboard"))
        self.jsonl = (folder / "metrics.jsonl").open("a")
        self.rows: list[dict] = []

    def log(self, step: int, values: dict, prefix: str = "train") -> None:
        """One row of scalars; an evaluation's nested results (its content-dependence diagnostic,
        intervals as [low, high]) are flattened to scalars (``follows_frame``, ``exact_ci_low``)."""
        values = scalars(values)
        for key, value in values.items():
            self.writer.add_scalar(f"{prefix}/{key}", value, step)
        row = {"step": step, "split": prefix, **values}
        self.rows.append(row)
        self.jsonl.write(json.dumps(row) + "\n")
        self.jsonl.flush()

    def close(self) -> Path:
        self.writer.close()
        self.jsonl.close()
        return write_png(self.rows, self.folder / "curves.png")


def scalars(values: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(scalars(value))
        elif isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
            out[f"{key}_low"], out[f"{key}_high"] = float(value[0]), float(value[1])
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def write_png(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in rows if r.get("split") == "train"]
    evals = [r for r in rows if r.get("split") == "eval"]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.6))
    for ax, (title, keys) in zip(axes, PANELS, strict=True):
        for key in keys:
            points = [(r["step"], r[key]) for r in train if key in r]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, _smooth(list(ys)), label=key)
        if title == "reward" and evals:
            ax.plot([r["step"] for r in evals], [r["mean_reward"] for r in evals], "o-", label="held-out reward")
            ax.plot([r["step"] for r in evals], [r["exact"] for r in evals], "s-", label="held-out exact")
        if title == "reward components":  # does the held-out answer follow the frames or the numbers?
            for key, marker in (("follows_frame", "^-"), ("follows_number", "v-")):
                points = [(r["step"], r[key]) for r in evals if key in r]
                if points:
                    ax.plot(*zip(*points, strict=True), marker, label=f"held-out {key}")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _smooth(values: list[float], window: int = 5) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out
