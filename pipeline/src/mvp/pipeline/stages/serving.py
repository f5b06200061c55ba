"""Serving: `mvp serve` on the trained checkpoint as a child process, asked one held-out sample
twice: through the OpenAI API with the official client, and through /v1/mvp/predict, which answers
the sample on the server and scores it through the reward-service. Both are greedy on the same
prompt path, so their answers must agree."""

from __future__ import annotations

import json

import httpx
import openai

from mvp.common.procs import free_port
from mvp.common.sample import frame_uris, openai_messages
from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from mvp.pipeline.artifacts import Checkpoint, SampleSet, Served, Services
from mvp.pipeline.context import Context


def run(
    ctx: Context, checkpoint: Checkpoint, sample_set: SampleSet, store: StoreSettings, services: Services
) -> tuple[Served, str]:
    """Serves ``checkpoint`` and asks it the first sample of ``sample_set`` through the OpenAI API
    (the official client) and through /v1/mvp/predict (scored by the reward-service at
    ``services.reward_addr``)."""
    port = free_port()
    args = ["serve", "--port", str(port), "--model", checkpoint.uri, "--served-model-name", ctx.served_name]
    args += ["--allowed-buckets", ctx.config.bucket, "--reward-addr", services.reward_addr]
    env = {"MVP_S3_ENDPOINT": store.endpoint or ""}
    child = ctx.sup.start("inference", args, env, detached=ctx.config.keep_serving)
    base = f"http://127.0.0.1:{port}"
    ctx.sup.wait_ready(child, lambda: httpx.get(f"{base}/health", timeout=2).status_code == 200, 180)
    sample = json.loads(Storage(store).get_bytes(sample_set.uri).decode().splitlines()[0])
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=2)
    reply = client.chat.completions.create(
        model=ctx.served_name,
        messages=openai_messages(sample["prompt"], frame_uris(sample)),
        max_tokens=32,
        temperature=0,
    )
    answer = reply.choices[0].message.content or ""
    predicted = httpx.post(f"{base}/v1/mvp/predict", json={"sample": sample, "max_tokens": 32}, timeout=300)
    predicted.raise_for_status()
    scored = predicted.json()
    if scored["completion"] != answer:
        raise RuntimeError(
            f"mvp serve answered sample {sample['id']} {answer!r} through the OpenAI API but "
            f"{scored['completion']!r} through /v1/mvp/predict (both greedy, same prompt)"
        )
    served = Served(sample["id"], answer, scored["reward"], sample["label"]["answer"], base)
    kept = f"; still serving at {base}/v1 (pid {child.popen.pid})" if ctx.config.keep_serving else ""
    return served, f"sample {sample['id']}: answered {answer!r}, reward {scored['reward']:.3f}{kept}"
