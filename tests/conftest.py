from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import Proc, start_reward, start_store


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with a slow test first, in collection order otherwise (the sort is stable). With
    `make test`'s two workers taking whole files, a minutes-long file started last would run alone
    at the end while the other worker idles."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


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
