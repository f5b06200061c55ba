"""Helpers that start real service processes on free loopback ports for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MVP = [sys.executable, "-m", "mvp.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode} before it was ready")
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001, S110 - not ready yet
            pass
        time.sleep(0.1)
    if proc is not None:  # the caller never gets a handle to stop it: a late start must not outlive the test
        proc.kill()
        proc.wait(timeout=10)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Proc:
    """A started child process with its log file; stop() sends SIGTERM and waits."""

    popen: subprocess.Popen
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return int(self.popen.returncode)


def start(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Proc:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "MVP_LOG_FORMAT": "text", **(env or {})}
    log_file = log_path.open("wb")
    popen = subprocess.Popen([*MVP, *args], stdout=log_file, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)
    return Proc(popen, log_path)


def start_reward(tmp: Path, *extra: str, env: dict[str, str] | None = None) -> Proc:
    port, metrics_port, http_port = free_port(), free_port(), free_port()
    proc = start(
        [
            "reward",
            "serve",
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
            "--http-port",
            str(http_port),
            *extra,
        ],
        tmp / f"reward-{port}.log",
        env,
    )
    proc.ports = {"grpc": port, "metrics": metrics_port, "http": http_port}
    wait_for(lambda: port_open(http_port) and port_open(port), 60, "reward-service", proc.popen)
    return proc


def start_store(tmp: Path, data_dir: Path | None = None) -> Proc:
    port = free_port()
    args = ["store", "serve", "--port", str(port), "--buckets", "mvp"]
    args += ["--data-dir", str(data_dir)] if data_dir else ["--data-dir", str(tmp / f"store-{port}")]
    proc = start(args, tmp / f"store-{port}.log")
    proc.ports = {"s3": port}
    wait_for(lambda: "object store listening" in proc.log(), 60, "object store", proc.popen)
    return proc


def start_synth(tmp: Path, s3_port: int, *extra: str) -> Proc:
    port, metrics_port = free_port(), free_port()
    proc = start(
        ["synth", "serve", "--port", str(port), "--metrics-port", str(metrics_port), *extra],
        tmp / f"synth-{port}.log",
        {"MVP_S3_ENDPOINT": f"http://127.0.0.1:{s3_port}"},
    )
    proc.ports = {"grpc": port, "metrics": metrics_port}
    wait_for(lambda: "grpc server listening" in proc.log(), 60, "synth-service", proc.popen)
    return proc


def start_serve(tmp: Path, *extra: str, env: dict[str, str] | None = None, timeout: float = 120) -> Proc:
    port = free_port()
    model = [] if "--model" in extra else ["--model", "tiny"]  # the fast fixture unless a test names one
    proc = start(["serve", "--port", str(port), *model, *extra], tmp / f"serve-{port}.log", env)
    proc.ports = {"http": port}
    wait_for(lambda: port_open(port), timeout, "mvp serve", proc.popen)
    return proc
