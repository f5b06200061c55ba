"""The contracts: generated stubs match the .proto files, the JSON label that synth-service
writes (proto field names) is what the reward library reads, and the CLI surface is complete."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict

from mvp.reward.core import Label, RewardConfig, score
from mvp.v1 import reward_pb2, sample_pb2
from tests.procs import MVP, REPO

pytestmark = pytest.mark.unit


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(REPO / "proto")) for p in (REPO / "proto/mvp/v1").glob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            *protos,
        ],
        cwd=REPO / "proto",
        check=True,
    )
    generated = sorted(p.name for p in (tmp_path / "mvp/v1").iterdir())
    committed = REPO / "proto/src/mvp/v1"
    _match, mismatch, errors = filecmp.cmpfiles(tmp_path / "mvp/v1", committed, generated, shallow=False)
    assert not mismatch and not errors, f"stale stubs {mismatch + errors}: run `make proto` and commit"


def test_label_json_from_proto_is_read_by_the_reward_library() -> None:
    label = sample_pb2.Label(
        answer=[4, 2, 7],
        num_candidates=9,
        index_base=1,
        candidate_times_s=[float(i) for i in range(9)],
        gap_start_s=3.0,
        gap_end_s=5.0,
    )
    text = json.dumps(MessageToDict(label, preserving_proto_field_name=True))
    parsed = Label.from_json(text)
    assert parsed.answer == (4, 2, 7)
    assert parsed.num_candidates == 9
    assert parsed.gap_end_s == 5.0
    assert score("<answer>4, 2, 7</answer>", parsed, RewardConfig()).reward == 1.0


def test_reward_config_proto_matches_library_fields() -> None:
    proto_fields = {f.name for f in reward_pb2.RewardConfig.DESCRIPTOR.fields}
    assert proto_fields == set(RewardConfig.model_fields)
    components = {f.name for f in reward_pb2.RewardComponents.DESCRIPTOR.fields}
    assert components == {"format", "selection", "ordering", "exact", "soft"}


def test_cli_lists_every_component() -> None:
    out = subprocess.run([*MVP, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("run", "synth", "reward", "model", "train", "eval", "data", "serve", "store"):
        assert f"    {command}" in out


@pytest.mark.parametrize(
    ("command", "env_var"),
    [
        ("reward serve", "MVP_REWARD_PORT"),
        ("synth serve", "MVP_SYNTH_WORKERS"),
        ("store serve", "MVP_STORE_DATA_DIR"),
        ("train", "MVP_S3_ENDPOINT"),
        ("serve", "MVP_SERVE_"),
    ],
)
def test_subcommand_help_names_env_vars(command: str, env_var: str) -> None:
    out = subprocess.run([*MVP, *command.split(), "--help"], capture_output=True, text=True, check=True).stdout
    assert env_var in out


def test_unbuilt_commands_fail_clearly(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """A command whose package is not installed stays listed and fails naming its package."""
    from mvp import cli

    monkeypatch.setitem(cli.COMMANDS, "ghost", ("mvp.ghost_component.cli", "mvp-ghost", "a component not installed"))
    assert "ghost" in cli.build_parser().format_help()
    assert cli.main(["ghost"]) == 2
    err = capsys.readouterr().err
    assert "not available yet" in err and "mvp-ghost" in err
