"""`Supervisor.wait_ready` against real child processes: a child that keeps reporting progress is
given time to start; one that goes quiet, or never reports at all, is given the plain bound."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mvp.pipeline.supervisor import Child, StageError, Supervisor

pytestmark = pytest.mark.integration

# prints a line every 0.2 s for 2.5 s, then "ready" (well past a 1 s bound counted from the start)
SLOW_BUT_TALKING = """
import time
for i in range(12):
    print(i, flush=True)
    time.sleep(0.2)
print("ready", flush=True)
time.sleep(30)
"""
SILENT = "import time\ntime.sleep(30)"


def child(tmp_path: Path, name: str, code: str) -> Child:
    log_path = tmp_path / f"{name}.log"
    popen = subprocess.Popen([sys.executable, "-c", code], stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    return Child(name, popen, log_path)


def ready(c: Child):
    return lambda: "ready" in c.log_path.read_text()


def log_size(c: Child):
    return lambda: c.log_path.stat().st_size


def test_progress_restarts_the_bound(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs")
    talking = child(tmp_path, "talking", SLOW_BUT_TALKING)
    try:
        sup.wait_ready(talking, ready(talking), 1.0, progress=log_size(talking))
    finally:
        talking.popen.kill()
    again = child(tmp_path, "again", SLOW_BUT_TALKING)
    try:
        with pytest.raises(StageError, match=r"again not ready after 1s;"):  # without progress: 1 s in all
            sup.wait_ready(again, ready(again), 1.0)
    finally:
        again.popen.kill()


def test_a_child_without_progress_still_times_out(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs")
    silent = child(tmp_path, "silent", SILENT)
    try:
        with pytest.raises(StageError, match=r"silent not ready after 1s without progress"):
            sup.wait_ready(silent, ready(silent), 1.0, progress=log_size(silent))
    finally:
        silent.popen.kill()
