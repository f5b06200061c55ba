"""Serving: `mvp serve` on the trained checkpoint as a child process, asked one held-out sample
with the official OpenAI client, its answer scored by reward-service."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mvp.pipeline.run import Pipeline


def run(job: Pipeline) -> str:
    """Serves the trained checkpoint, asks it one held-out sample through the OpenAI API with
    the official client, and scores the answer through the reward-service."""
    import openai

    from mvp.clients import RewardClient
    from mvp.common.procs import free_port
    from mvp.common.sample import frame_uris, label_json, openai_messages
    from mvp.common.storage import Storage

    port = free_port()
    args = [
        "serve",
        "--port",
        str(port),
        "--model",
        job.state.artifacts["checkpoint"],
        "--served-model-name",
        job.served_name,
        "--allowed-buckets",
        job.config.bucket,
        "--reward-addr",
        job.state.reward_addr,
    ]
    env = {"MVP_S3_ENDPOINT": job.state.store.endpoint or ""}
    child = job.sup.start("inference", args, env, detached=job.config.keep_serving)
    base = f"http://127.0.0.1:{port}"
    job.sup.wait_ready(child, lambda: _http_ok(f"{base}/health"), 180)
    split = "heldout" if "heldout" in job.state.splits else "train"
    line = Storage(job.state.store).get_bytes(job.samples_uri(split)).decode().splitlines()[0]
    sample = json.loads(line)
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=2)
    reply = client.chat.completions.create(
        model=job.served_name,
        messages=openai_messages(sample["prompt"], frame_uris(sample)),
        max_tokens=32,
        temperature=0,
    )
    answer = reply.choices[0].message.content or ""
    with RewardClient(job.state.reward_addr) as rc:
        (scored,) = rc.score([answer], [label_json(sample)])
    job.state.served = {
        "sample_id": sample["id"],
        "answer": answer,
        "reward": scored.reward,
        "ground_truth": sample["label"]["answer"],
        "url": base,
    }
    kept = f"; still serving at {base}/v1 (pid {child.popen.pid})" if job.config.keep_serving else ""
    return f"sample {sample['id']}: answered {answer!r}, reward {scored.reward:.3f}{kept}"


def _http_ok(url: str) -> bool:
    import httpx

    return httpx.get(url, timeout=2).status_code == 200
