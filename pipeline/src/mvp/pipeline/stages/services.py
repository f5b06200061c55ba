"""synth-service and reward-service as child processes (or the running ones named in the config),
awaited until gRPC health says SERVING."""

from __future__ import annotations

from mvp.clients import RewardClient, SynthClient
from mvp.common.procs import free_port
from mvp.common.settings import StoreSettings
from mvp.pipeline.artifacts import Services
from mvp.pipeline.context import Context


def run(ctx: Context, store: StoreSettings) -> tuple[Services, str]:
    config = ctx.config
    env = {"MVP_S3_ENDPOINT": store.endpoint or ""}
    started = []  # (child, client class, address)
    synth_addr, reward_addr = config.synth_addr, config.reward_addr
    if not synth_addr:
        port = free_port()
        child = ctx.sup.start("synth-service", ["synth", "serve", "--port", str(port), "--metrics-port", "0"], env)
        synth_addr = f"127.0.0.1:{port}"
        started.append((child, SynthClient, synth_addr))
    if not reward_addr:
        port = free_port()
        child = ctx.sup.start(
            "reward-service", ["reward", "serve", "--port", str(port), "--metrics-port", "0", "--http-port", "0"]
        )
        reward_addr = f"127.0.0.1:{port}"
        started.append((child, RewardClient, reward_addr))
    for child, client_cls, addr in started:
        client = client_cls(addr)
        ctx.sup.wait_ready(child, lambda c=client: c.wait_healthy(timeout_s=1.0) is None, 120)
        client.close()
    return Services(synth_addr, reward_addr), f"synth-service {synth_addr}, reward-service {reward_addr} (SERVING)"
