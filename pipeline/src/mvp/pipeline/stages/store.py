"""The object store: the one from MVP_S3_ENDPOINT, or the embedded S3-compatible server as a child process."""

from __future__ import annotations

from mvp.common.procs import free_port
from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from mvp.pipeline.context import Context


def run(ctx: Context) -> tuple[StoreSettings, str]:
    env_store = StoreSettings()
    if env_store.endpoint:
        Storage(env_store).ensure_bucket(ctx.config.bucket)
        return env_store, f"using MVP_S3_ENDPOINT={env_store.endpoint}"
    port = free_port()
    child = ctx.sup.start(
        "store",
        ["store", "serve", "--port", str(port), "--data-dir", str(ctx.out / "store"), "--buckets", ctx.config.bucket],
        # every acknowledged write is already on disk: stopping it loses nothing
        stop_timeout_s=20.0,
    )
    # "listening" is logged only after the objects of earlier runs are loaded back; while they load,
    # the store logs progress every 5 s, and each line restarts the 120 s bound
    ctx.sup.wait_ready(
        child,
        lambda: "object store listening" in child.log_path.read_text(),
        120,
        progress=lambda: child.log_path.stat().st_size,
    )
    store = StoreSettings(endpoint=f"http://127.0.0.1:{port}")
    return store, f"embedded S3-compatible store on 127.0.0.1:{port}, data in {ctx.out / 'store'}"
