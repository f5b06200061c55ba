"""Reward-service throughput: gRPC and OpenRLHF-HTTP against the in-process library.

Starts `mvp reward serve` as a separate process, drives it from this process with batches of 64
completions (a GRPO group of 8-16 x several prompts) for a fixed time, and prints completions/s,
batch latency percentiles and ratios. The last line is one JSON object.

    python benchmarks/reward_throughput.py [--seconds 5] [--batch 64] [--inflight 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvp.reward.core import Label, RewardConfig, score
from mvp.v1 import reward_pb2, reward_pb2_grpc
from tests.procs import start_reward


def make_workload(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Realistic GRPO batches: K=4 of 8 candidates, a short think block, a mix of exact, partial,
    malformed answers; each label repeated over its group of 8."""
    rng = random.Random(seed)
    completions, labels = [], []
    for _ in range(n // 8 + 1):
        answer = rng.sample(range(1, 9), 4)
        label = json.dumps({"answer": answer, "num_candidates": 8, "index_base": 1})
        for _ in range(8):
            roll = rng.random()
            if roll < 0.3:
                guess = answer
            elif roll < 0.8:
                guess = rng.sample(range(1, 9), 4)
            else:
                guess = None
            think = "<think>The ball moves from left to right, so the frame with it in the middle comes next.</think>"
            body = f"<answer>{', '.join(map(str, guess))}</answer>" if guess else "I think it is frame three"
            completions.append(think + body)
            labels.append(label)
    return completions[:n], labels[:n]


def bench_inprocess(completions: list[str], labels: list[str], seconds: float) -> float:
    config = RewardConfig()
    parsed = [Label.from_json(x) for x in labels]
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for c, lab in zip(completions, parsed, strict=True):
            score(c, lab, config)
        done += len(completions)
    return done / (time.perf_counter() - t0)


def bench_grpc(port: int, batches: list[reward_pb2.ScoreRequest], seconds: float, inflight: int) -> dict:
    import grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = reward_pb2_grpc.RewardServiceStub(channel)
    for request in batches[:20]:  # warm-up
        stub.Score(request)
    latencies: list[float] = []
    lock = threading.Lock()
    done = 0
    stop_at = time.perf_counter() + seconds

    def worker(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < stop_at:
            request = batches[i % len(batches)]
            t = time.perf_counter()
            stub.Score(request, timeout=30)
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)
                done += len(request.items)
            i += inflight

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(inflight)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    channel.close()
    return _summary(done, elapsed, latencies)


def bench_http(port: int, payloads: list[bytes], batch: int, seconds: float) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, done = [], 0
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        t = time.perf_counter()
        conn.request("POST", "/score", body=payloads[i % len(payloads)], headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, body[:200]
        latencies.append(time.perf_counter() - t)
        done += batch
        i += 1
    return _summary(done, time.perf_counter() - t0, latencies)


def _summary(done: int, elapsed: float, latencies: list[float]) -> dict:
    latencies.sort()
    return {
        "completions_per_s": round(done / elapsed),
        "p50_ms": round(1000 * statistics.median(latencies), 3),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 3),
        "batches": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--inflight", type=int, default=4, help="concurrent gRPC calls in flight")
    args = parser.parse_args()

    completions, labels = make_workload(args.batch * 64)
    chunks = [
        (completions[i : i + args.batch], labels[i : i + args.batch]) for i in range(0, len(completions), args.batch)
    ]
    requests = [
        reward_pb2.ScoreRequest(
            items=[reward_pb2.ScoreItem(completion=c, label_json=lab) for c, lab in zip(cs, ls, strict=True)]
        )
        for cs, ls in chunks
    ]
    payloads = [json.dumps({"query": cs, "prompts": [""] * len(cs), "labels": ls}).encode() for cs, ls in chunks]

    inproc = bench_inprocess(completions, labels, args.seconds)
    print(f"in-process library: {inproc:,.0f} completions/s", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_reward(Path(tmp), "--log-level", "WARNING")
        try:
            grpc_serial = bench_grpc(proc.ports["grpc"], requests, args.seconds, 1)
            print(f"grpc (1 in flight): {grpc_serial}", file=sys.stderr)
            grpc_res = bench_grpc(proc.ports["grpc"], requests, args.seconds, args.inflight)
            print(f"grpc ({args.inflight} in flight): {grpc_res}", file=sys.stderr)
            http_res = bench_http(proc.ports["http"], payloads, args.batch, args.seconds)
            print(f"http (openrlhf protocol): {http_res}", file=sys.stderr)
        finally:
            proc.stop()
    print(
        json.dumps(
            {
                "bench": "reward",
                "batch": args.batch,
                "inflight": args.inflight,
                "completions_per_s": grpc_res["completions_per_s"],
                "p50_batch_ms": grpc_res["p50_ms"],
                "p99_batch_ms": grpc_res["p99_ms"],
                "serial_completions_per_s": grpc_serial["completions_per_s"],
                "serial_p50_batch_ms": grpc_serial["p50_ms"],
                "serial_p99_batch_ms": grpc_serial["p99_ms"],
                "inprocess_completions_per_s": round(inproc),
                "ratio_vs_inprocess": round(grpc_res["completions_per_s"] / inproc, 3),
                "http_completions_per_s": http_res["completions_per_s"],
                "http_p99_batch_ms": http_res["p99_ms"],
                "ratio_grpc_vs_http": round(grpc_res["completions_per_s"] / http_res["completions_per_s"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
