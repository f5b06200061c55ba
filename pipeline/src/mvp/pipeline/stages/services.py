"""synth-service and reward-service as child processes (or the running ones named in the config),
awaited until gRPC health says SERVING."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mvp.pipeline.run import Pipeline


def run(job: Pipeline) -> str:
    from mvp.clients import RewardClient, SynthClient
    from mvp.common.procs import free_port

    env = {"MVP_S3_ENDPOINT": job.state.store.endpoint or ""}
    started = []
    if job.config.synth_addr:
        job.state.synth_addr = job.config.synth_addr
    else:
        port = free_port()
        child = job.sup.start("synth-service", ["synth", "serve", "--port", str(port), "--metrics-port", "0"], env)
        job.state.synth_addr = f"127.0.0.1:{port}"
        started.append(child)
    if job.config.reward_addr:
        job.state.reward_addr = job.config.reward_addr
    else:
        port = free_port()
        child = job.sup.start(
            "reward-service", ["reward", "serve", "--port", str(port), "--metrics-port", "0", "--http-port", "0"]
        )
        job.state.reward_addr = f"127.0.0.1:{port}"
        started.append(child)
    for child in started:
        client_cls = SynthClient if child.name == "synth-service" else RewardClient
        addr = job.state.synth_addr if child.name == "synth-service" else job.state.reward_addr
        client = client_cls(addr)
        job.sup.wait_ready(child, lambda c=client: c.wait_healthy(timeout_s=1.0) is None, 120)
        client.close()
    return f"synth-service {job.state.synth_addr}, reward-service {job.state.reward_addr} (SERVING)"
