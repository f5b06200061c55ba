"""`mvp serve`: a Video LLM behind an OpenAI-compatible API."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from mvp.common.settings import LoggingSettings, StoreSettings, add_settings_flags, settings_from_args
from mvp.inference.settings import ServeSettings

log = logging.getLogger(__name__)


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve a checkpoint (folder or s3:// URI; default: the built-in tiny Qwen2.5-VL) behind an "
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
    from mvp.common.storage import Storage
    from mvp.inference.server import App, create_app
    from mvp.trainer.policy import Policy
    from mvp.trainer.runner import resolve_model

    configure_logging(settings_from_args(LoggingSettings, args))
    settings = settings_from_args(ServeSettings, args)
    backend = pick_backend(settings.backend)
    if backend == "vllm":
        print(
            "mvp serve: the vLLM backend is not available yet (inference issue #6); use --backend transformers",
            file=sys.stderr,
        )
        return 2
    storage = Storage(settings_from_args(StoreSettings, args))
    path = resolve_model(settings.model or "tiny", storage, Path(tempfile.gettempdir()) / "mvp-serve-cache")
    state = App(settings, Policy(path), storage)
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
    server.run()
    state.engine.stop()
    return 0
