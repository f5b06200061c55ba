from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import Proc, start_reward, start_store


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("procs")


@pytest.fixture(scope="session")
def reward_server(session_tmp: Path) -> Iterator[Proc]:
    """One real reward-service process for the session (gRPC, HTTP and metrics on free ports)."""
    proc = start_reward(session_tmp)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def s3_server(session_tmp: Path) -> Iterator[Proc]:
    """One real S3-compatible server process (moto over HTTP) for the session."""
    proc = start_store(session_tmp)
    yield proc
    proc.stop()


@pytest.fixture
def s3_settings(s3_server: Proc):
    from mvp.common.settings import StoreSettings

    return StoreSettings(endpoint=f"http://127.0.0.1:{s3_server.ports['s3']}")
