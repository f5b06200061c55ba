"""`mvp serve` with an API key: every /v1 route needs it (the OpenAI client's api_key works
unchanged); a missing or wrong key is a 401 OpenAI error object; /health and /metrics stay open."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from tests.procs import start_serve

pytestmark = pytest.mark.integration


def _status(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, dict | str]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read().decode()
            return response.status, body
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_every_api_route_needs_the_key(tmp_path: Path) -> None:
    proc = start_serve(tmp_path, env={"MVP_SERVE_API_KEY": "sk-test-123"})
    base = f"http://127.0.0.1:{proc.ports['http']}"
    try:
        good = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-test-123", max_retries=0)
        assert [m.id for m in good.models.list().data] == ["mvp-tiny"]
        reply = good.chat.completions.create(
            model="mvp-tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0
        )
        assert reply.choices[0].message.content is not None
        bad = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        body = json.dumps({"model": "mvp-tiny", "messages": [{"role": "user", "content": "hi"}]}).encode()
        for route, data in (("/v1/models", None), ("/v1/chat/completions", body), ("/v1/mvp/predict", b"{}")):
            headers = {"Content-Type": "application/json"}
            code, error = _status(base + route, headers, data)
            assert code == 401 and error["error"]["code"] == "missing_api_key", route
            code, error = _status(base + route, {**headers, "Authorization": "Bearer nope"}, data)
            assert code == 401 and error["error"]["code"] == "invalid_api_key", route
        assert _status(base + "/health")[0] == 200
        assert _status(base + "/metrics")[0] == 200
    finally:
        proc.stop()
