"""Progress for people: a tqdm bar on a terminal; in a pipe, a file or a CI log, plain lines at a
sensible rate (the first update, then at most one line per ``every_s`` seconds or per 10% of the
total, and always the last), never carriage returns.

    bar = progress(total=steps, desc="grpo", unit="step")
    bar.update(1); bar.set_postfix(reward=0.31)
    bar.close()

``job_progress`` draws a corpus job (``mvp.v1.Job``) on either.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any


def is_tty(stream: IO[str] | None = None) -> bool:
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class LineProgress:
    """The subset of tqdm's interface the project uses, printing plain lines."""

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        every_s: float = 30.0,
        file: IO[str] | None = None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.every_s = every_s
        self.file = file or sys.stderr
        self.postfix: dict[str, Any] = {}
        self._t0 = time.monotonic()
        self._last_time: float | None = None
        self._last_n = initial
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        self.refresh()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def refresh(self) -> None:
        now = time.monotonic()
        if self._last_time is None:
            self._emit(now)
            return
        if self.n == self._last_n:
            return
        tenth = max(1, self.total // 10) if self.total else 0
        if (
            now - self._last_time >= self.every_s
            or (tenth and self.n - self._last_n >= tenth)
            or (self.total and self.n >= self.total)
        ):
            self._emit(now)

    def _emit(self, now: float) -> None:
        of = f"/{self.total}" if self.total else ""
        extra = "".join(f" {k}={v}" for k, v in self.postfix.items())
        print(f"{self.desc}: {self.n}{of} {self.unit} ({now - self._t0:.0f}s){extra}", file=self.file, flush=True)
        self._last_time, self._last_n = now, self.n

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n != self._last_n:
                self._emit(time.monotonic())


def progress(total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0, file: IO[str] | None = None):
    """A tqdm bar on a TTY, else a ``LineProgress``."""
    file = file or sys.stderr
    if is_tty(file):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=file)
    return LineProgress(total=total, desc=desc, unit=unit, initial=initial, file=file)


def job_progress(bar, job) -> None:
    """Shows a corpus job's state (mvp.v1.Job) on a bar from ``progress``."""
    bar.total = job.videos_total
    bar.n = job.videos_ok + job.videos_skipped + job.videos_failed
    bar.set_postfix(samples=job.samples_written, failed=job.videos_failed)
    bar.refresh()
