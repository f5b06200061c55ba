"""Child processes of the main job: started with their logs on disk, awaited until healthy, and
always stopped (SIGTERM, then SIGKILL) on exit, Ctrl-C or failure, so no process or port outlives
the run."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    log_path: Path
    stop_timeout_s: float = 20.0

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class StageError(RuntimeError):
    """A stage failed; the message names the stage, the cause and where the logs are."""


class Supervisor:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []
        # The signal that asked the run to stop. Its handler also raises KeyboardInterrupt, but a
        # library that catches it in a blocking call (or turns it into its own error) would lose
        # it; the loops here re-raise from this flag, so an interrupt is never lost.
        self.interrupted: int | None = None
        log_dir.mkdir(parents=True, exist_ok=True)

    def check_interrupted(self) -> None:
        if self.interrupted is not None:
            raise KeyboardInterrupt(f"signal {self.interrupted}")

    def start(
        self,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        detached: bool = False,
        stop_timeout_s: float = 20.0,
    ) -> Child:
        """Starts ``mvp ARGS``; a detached child is not stopped at exit (``--keep-serving``).
        ``stop_timeout_s``: how long it may take to stop after SIGTERM before it is killed."""
        log_path = self.log_dir / f"{name}.log"
        handle = log_path.open("wb")  # one run, one log: readiness checks read it
        popen = subprocess.Popen(
            [sys.executable, "-m", "mvp.cli", *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            # MVP_SUPERVISED_BY marks every child with its run, so leftovers can be found.
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "MVP_LOG_FORMAT": "text",
                "MVP_SUPERVISED_BY": str(self.log_dir),
                **(env or {}),
            },
            start_new_session=True,  # Ctrl-C in the terminal reaches us, and we stop children in order
        )
        child = Child(name, popen, log_path, stop_timeout_s)
        if not detached:
            self.children.append(child)
        return child

    def wait_ready(
        self, child: Child, ready: Callable[[], bool], timeout: float, progress: Callable[[], object] | None = None
    ) -> None:
        """Waits until ``ready()``; fails if the child exits or ``timeout`` passes. With ``progress``,
        the timeout counts from the last time its value changed (a child that reports progress while
        it starts, e.g. a store loading a large data folder, is slow, not stuck)."""
        deadline = time.monotonic() + timeout
        seen = progress() if progress else None
        while time.monotonic() < deadline:
            if progress and (now := progress()) != seen:
                seen, deadline = now, time.monotonic() + timeout
            self.check_interrupted()
            if child.popen.poll() is not None:
                raise StageError(
                    f"{child.name} exited with code {child.popen.returncode} while starting; "
                    f"log {child.log_path}:\n{child.tail()}"
                )
            try:
                if ready():
                    return
            except Exception:  # noqa: BLE001, S110 - not ready yet
                pass
            time.sleep(0.2)
        quiet = " without progress" if progress else ""
        raise StageError(f"{child.name} not ready after {timeout:.0f}s{quiet}; log {child.log_path}:\n{child.tail()}")

    def stop_all(self) -> None:
        for child in reversed(self.children):
            if child.popen.poll() is None:
                child.popen.send_signal(signal.SIGTERM)
        started = time.monotonic()
        for child in reversed(self.children):
            try:
                child.popen.wait(max(0.1, started + child.stop_timeout_s - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("child did not stop in time; killing it", extra={"child": child.name})
                child.popen.kill()
                child.popen.wait()
        self.children.clear()
