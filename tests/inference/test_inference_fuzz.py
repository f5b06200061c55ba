"""Random bytes and random JSON at every `mvp serve` route: never a 5xx, always an OpenAI error
object, and the server is alive afterwards (issue #15 item 9)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import bodies, http_status
from tests.procs import Proc, start_serve

pytestmark = pytest.mark.integration

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Proc:
    proc = start_serve(tmp_path_factory.mktemp("fuzz"), "--max-tokens-limit", "4")
    yield proc
    proc.stop()


@FUZZ
@given(body=bodies, path=st.sampled_from(["/v1/chat/completions", "/v1/mvp/predict"]))
def test_routes_never_5xx(server: Proc, body: bytes, path: str) -> None:
    assert http_status(f"http://127.0.0.1:{server.ports['http']}{path}", body) < 500


def test_alive_after_fuzz(server: Proc) -> None:
    base = f"http://127.0.0.1:{server.ports['http']}"
    assert http_status(base + "/health", None) == 200
    body = b'{"model": "mvp-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}'
    assert http_status(base + "/v1/chat/completions", body) == 200
