"""The service boundaries (pyproject.toml's import-linter contracts) hold, and a contract really
fails when code breaks it: a reward module importing torch is caught."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.procs import REPO

pytestmark = pytest.mark.unit

LINT = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]


def test_import_contracts_hold() -> None:
    proc = subprocess.run(LINT, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(
    ("package", "statement", "contract"),
    [
        ("reward-service/src/mvp/reward", "import torch", "reward-service never imports torch"),
        ("synth-service/src/mvp/synth", "from mvp.model import policy", "synth-service never imports model code"),
        ("inference/src/mvp/inference", "from mvp.trainer import runner", "inference depends on the shared package"),
        ("trainer/src/mvp/trainer", "from mvp.synth import corpus", "the trainer reaches services only"),
    ],
)
def test_a_deliberate_violation_breaks_its_contract(package: str, statement: str, contract: str) -> None:
    probe = REPO / package / f"_boundary_probe_{uuid.uuid4().hex[:8]}.py"
    probe.write_text(f"{statement}  # deliberate violation, written and removed by the test\n")
    try:
        proc = subprocess.run(LINT, cwd=REPO, capture_output=True, text=True)
    finally:
        probe.unlink()
    assert proc.returncode != 0
    broken = proc.stdout.split("Broken contracts", 1)[-1]
    assert contract in " ".join(broken.split()), proc.stdout
    assert probe.stem in proc.stdout
