"""What `mvp serve` trusts (issue #30 items 12, 17 and the vLLM key): the checkpoint cache only if
it is private to this user and its files match the store's listing; secrets from files; the vLLM
server it launches only with a random key of its own (in the environment, not on the command line),
sent on every upstream call; and the periodic memory trim runs in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import openai
import pytest

from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from tests.procs import MVP, REPO, Proc, start_serve

pytestmark = pytest.mark.integration

CHAT = {"model": "mvp-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def _upload_tiny(storage: Storage) -> str:
    from mvp.model.tiny import ensure_tiny_model

    uri = f"s3://mvp/serve-cache-{uuid.uuid4().hex[:8]}/ckpt"
    storage.ensure_bucket("mvp")
    for path in sorted(ensure_tiny_model().iterdir()):
        storage.put_file(str(path), f"{uri}/{path.name}")
    return uri


def _serve_exits(cache: Path, uri: str, s3_port: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "MVP_S3_ENDPOINT": f"http://127.0.0.1:{s3_port}", "MVP_LOG_FORMAT": "text"}
    cmd = [*MVP, "serve", "--port", "0", "--model", uri, "--cache-dir", str(cache)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def test_a_cache_folder_others_can_write_to_is_refused(tmp_path: Path, s3_server: Proc) -> None:
    uri = _upload_tiny(Storage(StoreSettings(endpoint=f"http://127.0.0.1:{s3_server.ports['s3']}")))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    result = _serve_exits(shared, uri, s3_server.ports["s3"])
    assert result.returncode == 1 and "open to group or others" in result.stderr, result.stderr[-2000:]
    if os.geteuid() == 0:  # only root can give a folder away
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        result = _serve_exits(theirs, uri, s3_server.ports["s3"])
        assert result.returncode == 1 and "belongs to uid 65534" in result.stderr, result.stderr[-2000:]


def test_a_cached_checkpoint_that_differs_from_the_store_is_downloaded_again(
    tmp_path: Path, s3_server: Proc, s3_settings: StoreSettings
) -> None:
    from mvp.model.resolve import cached_checkpoint

    storage = Storage(s3_settings)
    uri = _upload_tiny(storage)
    cache = tmp_path / "cache"
    folder = cached_checkpoint(uri, storage, cache)  # the folder name anyone listing the bucket can compute
    cache.chmod(0o700)
    original = (folder / "config.json").read_bytes()
    planted = original[:-1] + (b" " if original[-1:] != b" " else b"\n")  # same size, other content
    (folder / "config.json").write_bytes(planted)
    proc = start_serve(
        tmp_path,
        "--model",
        uri,
        "--cache-dir",
        str(cache),
        "--served-model-name",
        "mvp-tiny",
        env={"MVP_S3_ENDPOINT": f"http://127.0.0.1:{s3_server.ports['s3']}"},
        timeout=300,
    )
    try:
        assert (folder / "config.json").read_bytes() == original
        assert "cached checkpoint does not match the store" in proc.log()
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{proc.ports['http']}/v1", api_key="unused", max_retries=0)
        assert c.chat.completions.create(**CHAT).choices
    finally:
        proc.stop()
    assert (cache.stat().st_mode & 0o777) == 0o700


def test_multipart_etags_are_checked(tmp_path: Path, s3_settings: StoreSettings) -> None:
    from mvp.inference.cache import etag_matches

    storage = Storage(s3_settings)
    storage.ensure_bucket("mvp")
    data = os.urandom(12 * 1024 * 1024)  # over 5 MiB: the client uploads it in parts
    uri = f"s3://mvp/etag-{uuid.uuid4().hex[:8]}/weights"
    storage.put_bytes(uri, data)
    (info,) = storage.list(uri)
    assert info.etag.strip('"').endswith("-3")
    path = tmp_path / "weights"
    path.write_bytes(data)
    assert etag_matches(path, info.etag) is True
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert etag_matches(path, info.etag) is not True


def _fake_vllm(tmp_path: Path) -> Path:
    """An executable that stands in for vLLM's Python: `-c 'import vllm'` succeeds, `-m
    vllm.entrypoints.openai.api_server ... --port P` serves /health and a canned chat completion that
    needs the key in VLLM_API_KEY (401 without one, as an unprotected server must not pass), and
    records its command line and key in launched.json."""
    script = tmp_path / "fake-vllm-python"
    record = tmp_path / "launched.json"
    script.write_text(
        f"""#!{sys.executable}
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
if sys.argv[1] == "-c":
    sys.exit(0)
KEY = os.environ.get("VLLM_API_KEY")
open({str(record)!r}, "w").write(json.dumps({{"argv": sys.argv, "key": KEY}}))
class H(BaseHTTPRequestHandler):
    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self._send(200, {{}})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not KEY or self.headers.get("Authorization") != "Bearer " + KEY:
            return self._send(401, {{"error": {{"message": "Unauthorized", "type": "invalid_request_error"}}}})
        message = {{"role": "assistant", "content": "ok"}}
        self._send(200, {{"id": "x", "object": "chat.completion", "created": 0, "model": "mvp-tiny",
            "choices": [{{"index": 0, "message": message, "finish_reason": "stop"}}],
            "usage": {{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}}})
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), H).serve_forever()
"""
    )
    script.chmod(0o755)
    return script


def test_the_launched_vllm_server_needs_a_random_key_kept_off_its_command_line(tmp_path: Path) -> None:
    proc = start_serve(tmp_path, "--backend", "vllm", "--vllm-python", str(_fake_vllm(tmp_path)), timeout=300)
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{proc.ports['http']}/v1", api_key="unused", max_retries=0)
        assert c.chat.completions.create(**CHAT).choices[0].message.content == "ok"
    finally:
        proc.stop()
    launched = json.loads((tmp_path / "launched.json").read_text())
    assert len(launched["key"]) >= 32 and launched["key"] not in " ".join(launched["argv"])
    assert "--api-key" not in launched["argv"]


def test_secrets_come_from_files_and_reach_a_vllm_sidecar(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-a-file\n")
    sidecar = start_serve(tmp_path, env={"MVP_SERVE_API_KEY_FILE": str(key_file)}, timeout=300)
    base = f"http://127.0.0.1:{sidecar.ports['http']}"
    front = start_serve(
        tmp_path,
        "--backend",
        "vllm",
        "--vllm-url",
        base,
        env={"MVP_SERVE_VLLM_API_KEY": "sk-from-a-file"},
        timeout=300,
    )
    try:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0).chat.completions.create(**CHAT)
        direct = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-from-a-file", max_retries=0)
        assert direct.chat.completions.create(**CHAT).choices
        through = openai.OpenAI(base_url=f"http://127.0.0.1:{front.ports['http']}/v1", api_key="x", max_retries=0)
        assert through.chat.completions.create(**CHAT).choices
    finally:
        front.stop()
        sidecar.stop()


@pytest.mark.unit
def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from mvp.inference.settings import ServeSettings

    key_file = tmp_path / "key"
    key_file.write_text("  sk-1  \n")
    assert ServeSettings(api_key_file=key_file).api_key.get_secret_value() == "sk-1"
    with pytest.raises(ValidationError, match="set one"):
        ServeSettings(api_key_file=key_file, api_key="sk-2")
    key_file.write_text("\n")
    with pytest.raises(ValidationError, match="empty"):
        ServeSettings(api_key_file=key_file)


@pytest.mark.unit
def test_the_memory_trim_runs_in_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from mvp.common import procs
    from mvp.inference import server
    from mvp.inference.settings import ServeSettings
    from mvp.inference.vllm_backend import VllmBackend, VllmUpstream

    trimmed = threading.Event()
    monkeypatch.setattr(procs, "release_free_memory", trimmed.set)  # what the shared trim loop calls
    settings = ServeSettings(model="tiny", memory_trim_interval_s=0.01)
    state = server.App(settings, VllmBackend(VllmUpstream("http://127.0.0.1:9"), settings), Storage(StoreSettings()))
    with TestClient(server.create_app(state)):
        assert trimmed.wait(30)
