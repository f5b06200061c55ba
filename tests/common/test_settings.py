from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from mvp.common.settings import add_settings_flags, settings_from_args
from mvp.reward.settings import RewardServerSettings

pytestmark = pytest.mark.unit


def parse(argv: list[str]) -> RewardServerSettings:
    parser = argparse.ArgumentParser()
    add_settings_flags(parser, RewardServerSettings)
    return settings_from_args(RewardServerSettings, parser.parse_args(argv))


def test_flags_override_env_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse([]).port == 50052
    monkeypatch.setenv("MVP_REWARD_PORT", "6000")
    monkeypatch.setenv("MVP_REWARD_SOFT", "true")
    assert parse([]).port == 6000
    assert parse([]).soft is True
    assert parse(["--port", "7000", "--no-soft"]).port == 7000
    assert parse(["--no-soft"]).soft is False


def test_invalid_settings_fail_at_startup() -> None:
    with pytest.raises(ValidationError):
        parse(["--port", "70000"])
    with pytest.raises(ValidationError, match="together"):
        parse(["--tls-cert-file", "/x.crt"])
