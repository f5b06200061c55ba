"""The serving backends behind one interface: both implement ``api.Backend`` whole, the server's
routes reach generation only through it, and the one bearer-token comparison every port uses
(gRPC, the reward-service's HTTP port, `mvp serve`) accepts exactly ``Bearer <token>``."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from mvp.common.auth import bearer_matches
from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from tests.procs import REPO

pytestmark = pytest.mark.unit

SERVER = REPO / "inference" / "src" / "mvp" / "inference" / "server.py"


def _protocol_members() -> set[str]:
    from mvp.inference.api import Backend

    names = {n for n in vars(Backend) if not n.startswith("_")}
    return names | set(Backend.__annotations__)


def test_both_backends_implement_every_member_of_the_interface(tmp_path: Path) -> None:
    from mvp.inference.api import Backend
    from mvp.inference.settings import ServeSettings
    from mvp.inference.transformers_backend import TransformersBackend
    from mvp.inference.vllm_backend import VllmBackend, VllmUpstream
    from mvp.model.policy import Policy
    from mvp.model.tiny import ensure_tiny_model

    settings = ServeSettings(model="tiny")
    vllm = VllmBackend(VllmUpstream("http://127.0.0.1:9"), settings, model_root="/m")
    local = TransformersBackend(Policy(ensure_tiny_model(tmp_path / "m")), settings)
    try:
        members = _protocol_members()
        assert {"prepare", "respond", "complete", "healthy", "metrics", "admission", "holds_admission"} <= members
        for backend in (vllm, local):
            assert isinstance(backend, Backend)
            missing = {m for m in members if not hasattr(backend, m)}
            assert not missing, (type(backend).__name__, missing)
            for name in ("prepare", "respond", "complete"):  # same parameters as the interface
                want = list(inspect.signature(getattr(Backend, name)).parameters)[1:]
                assert list(inspect.signature(getattr(backend, name)).parameters) == want, (name, backend.kind)
        assert (vllm.kind, vllm.holds_admission, local.kind, local.holds_admission) == (
            "vllm",
            False,
            "transformers",
            True,
        )
    finally:
        local.stop()


def test_the_server_reaches_generation_only_through_the_backend() -> None:
    """server.py names neither backend's internals (engine, policy, upstream) nor imports them:
    a third backend is a new class, not a new branch in every route."""
    tree = ast.parse(SERVER.read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"mvp.inference.engine", "mvp.inference.vllm_backend", "mvp.model.policy"}, imported
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not attrs & {"upstream", "engine", "policy", "tokenizer"}, attrs & {"upstream", "engine", "policy"}


def test_the_app_takes_any_backend() -> None:
    from mvp.inference.server import App
    from mvp.inference.settings import ServeSettings
    from mvp.inference.vllm_backend import VllmBackend, VllmUpstream

    settings = ServeSettings(model="tiny", max_queue=3)
    backend = VllmBackend(VllmUpstream("http://127.0.0.1:9"), settings)
    app = App(settings, backend, Storage(StoreSettings()))
    assert app.admission is backend.admission and app.admission.limit == 3


@pytest.mark.parametrize(
    ("given", "ok"),
    [
        ("Bearer s3cret", True),
        (b"Bearer s3cret", True),
        ("bearer s3cret", True),  # the scheme is case-insensitive (RFC 7235)
        ("BEARER s3cret", True),
        ("Bearer s3cret ", False),
        ("Bearer  s3cret", False),
        ("Bearer S3cret", False),  # the token is not
        ("Basic s3cret", False),
        ("s3cret", False),
        ("Bearer", False),
        ("", False),
        (None, False),
    ],
)
def test_bearer_matches_exactly_the_scheme_and_token(given, ok: bool) -> None:
    assert bearer_matches(given, b"s3cret") is ok
