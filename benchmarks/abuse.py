"""A short, bounded abuse run against each service (reward-service, synth-service, `mvp serve`):
slow clients that trickle headers (slowloris), oversized requests, and a burst of concurrent
requests, while a probe measures the health check and one normal request. Issue #30 added the
attacks its review found: idle ScoreStreams holding every slot and many large HTTP /score bodies at
once (reward); SynthesizeVideo with memory-hungry fields (synth); videos that take long to decode,
huge prompts and many large images (serve). The bar (issues #15, #30): health p99 during the abuse
under 100 ms and RSS growth under 50 MB per service.

The reference, measured in the same run: the same probes with no abuse; the JSON reports the
ratio of the p99s.

    python benchmarks/abuse.py [--seconds 8] [--burst 64] [--slow 50]

The last line is JSON: per service, requests sent / served / rejected by code, the p99 of health
and of a normal request at rest and under abuse, RSS before and after.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


CHAT = json.dumps({"model": "mvp-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}).encode()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def p99_ms(samples: list[float]) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2)


def probe(call: Callable[[], None], stop: threading.Event, out: list[float], every_s: float = 0.05) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            call()
            out.append(time.perf_counter() - t0)
        except Exception:  # noqa: BLE001 - a failed probe counts as the deadline
            out.append(5.0)
        time.sleep(every_s)


def slowloris(host: str, port: int, count: int, stop: threading.Event, sent: Counter) -> None:
    """Opens ``count`` connections that send one header byte per second and never finish."""
    socks = []
    for _ in range(count):
        try:
            s = socket.create_connection((host, port), timeout=2)
            s.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
            sent["slowloris"] += 1
        except OSError:
            sent["slowloris_refused"] += 1
    while not stop.is_set():
        for s in list(socks):
            try:
                s.sendall(b"X")
            except OSError:
                socks.remove(s)
                sent["slowloris_dropped"] += 1
        time.sleep(1.0)
    for s in socks:
        s.close()


def http_post(url: str, body: bytes) -> int:
    """The status of a POST; 0 when the connection itself failed (refused, reset)."""
    from tests.fuzz import http_status

    try:
        return http_status(url, body)
    except OSError:
        return 0


def chat(content) -> bytes:
    body = {"model": "mvp-tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 2}
    return json.dumps(body).encode()


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def blank_png(width: int, height: int) -> bytes:
    """A 1-bit PNG: a few KiB on the wire, ``width x height`` pixels once decoded."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def encode_video(frames: int, rate: int, size: int) -> bytes:
    """An H.264 MP4 (PyAV) of ``frames`` frames of noise at ``rate`` fps: small to send, slow to decode."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(8)]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "51"}
        for i in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(noise[i % 8], format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def probe_callables(service: str, target: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """(health check, normal request) of one service at ``target`` (gRPC address or base URL)."""
    if service == "inference":

        def health() -> None:
            with urllib.request.urlopen(target + "/health", timeout=5) as response:
                response.read()

        def normal() -> None:
            if http_post(target + "/v1/chat/completions", CHAT) != 200:
                raise RuntimeError("not served")

        return health, normal
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from mvp.clients import RewardClient, SynthClient

    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(target))
    if service == "reward":
        client = RewardClient(target)
        label = '{"answer": [2, 1], "num_candidates": 3}'
        normal = lambda: client.score(["<answer>2, 1</answer>"], [label])  # noqa: E731
    else:
        synth = SynthClient(target)
        normal = lambda: synth.list_jobs()  # noqa: E731
    return lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=5), normal


def probe_main(service: str, target: str, seconds: float) -> None:
    """The probe process: the health check every 50 ms and a normal request every 200 ms for
    ``seconds``; prints {"health": [...], "normal": [...]} (seconds per call; 5.0 = failed)."""
    health, normal = probe_callables(service, target)
    stop = threading.Event()
    health_s: list[float] = []
    normal_s: list[float] = []
    threads = [
        threading.Thread(target=probe, args=(health, stop, health_s)),
        threading.Thread(target=probe, args=(normal, stop, normal_s, 0.2)),
    ]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    print(json.dumps({"health": health_s, "normal": normal_s}))


def start_probe(service: str, target: str, seconds: float) -> subprocess.Popen:
    """The probes run in their own process, as a kubelet's would: the attackers' threads in this
    interpreter must not delay the probe's own client."""
    cmd = [sys.executable, __file__, "--probe", service, target, "--seconds", str(seconds)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def probe_results(proc: subprocess.Popen) -> tuple[list[float], list[float]]:
    out, _ = proc.communicate(timeout=120)
    data = json.loads(out.strip().splitlines()[-1])
    return data["health"], data["normal"]


ONLY_ATTACKS: set[str] = set()  # --attack: run only these (by name), to find which one costs what


def run_abuse(name: str, pid: int, target: str, attacks: list, seconds: float) -> dict:
    if ONLY_ATTACKS:
        attacks = [a for a in attacks if a.__name__ in ONLY_ATTACKS]
    rest_health, rest_normal = probe_results(start_probe(name, target, min(3.0, seconds / 2)))
    rss_before = rss_mb(pid)
    codes: Counter = Counter()
    sent: Counter = Counter()
    stop = threading.Event()
    attackers = [threading.Thread(target=attack, args=(stop, sent, codes)) for attack in attacks]
    for t in attackers:
        t.start()
    time.sleep(0.5)  # the attack is under way before the first probe
    busy = start_probe(name, target, seconds)
    busy_health, busy_normal = probe_results(busy)
    stop.set()
    for t in attackers:
        t.join(60)
    time.sleep(1.0)
    rss_after = rss_mb(pid)
    time.sleep(4.0)
    rss_later = rss_mb(pid)
    result = {
        "sent": dict(sent),
        "answered_by_code": {str(k): v for k, v in sorted(codes.items(), key=lambda kv: str(kv[0]))},
        "health_p99_ms_rest": p99_ms(rest_health),
        "health_p99_ms_abuse": p99_ms(busy_health),
        "normal_p99_ms_rest": p99_ms(rest_normal),
        "normal_p99_ms_abuse": p99_ms(busy_normal),
        "normal_failed_abuse": sum(x >= 5.0 for x in busy_normal),
        "normal_calls_abuse": len(busy_normal),
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_after": round(rss_after, 1),
        "rss_growth_mb": round(rss_after - rss_before, 1),
        "rss_mb_5s_later": round(rss_later, 1),
    }
    result["health_p99_ratio_abuse_to_rest"] = (
        round(result["health_p99_ms_abuse"] / result["health_p99_ms_rest"], 2) if result["health_p99_ms_rest"] else None
    )
    result["meets_bar"] = result["health_p99_ms_abuse"] < 100 and result["rss_growth_mb"] < 50
    print(f"{name}: {json.dumps(result)}", file=sys.stderr)
    return result


def burst(fire: Callable[[], object], count: int) -> Callable:
    def attack(stop: threading.Event, sent: Counter, codes: Counter) -> None:
        with ThreadPoolExecutor(count) as pool:
            while not stop.is_set():
                for code in pool.map(lambda _: fire(), range(count)):
                    sent["burst"] += 1
                    codes[code] += 1

    attack.__name__ = "burst"
    return attack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="abuse time per service")
    parser.add_argument("--burst", type=int, default=64, help="concurrent requests of the burst")
    parser.add_argument("--slow", type=int, default=50, help="slowloris connections")
    parser.add_argument(
        "--only", choices=["reward", "synth", "inference"], action="append", help="run only these services"
    )
    parser.add_argument(
        "--attack",
        action="append",
        default=[],
        help="run only the attacks of this name (burst, big_bodies, idle_streams, ...; repeatable)",
    )
    parser.add_argument("--probe", nargs=2, metavar=("SERVICE", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:  # the probe process that run_abuse starts
        probe_main(*args.probe, args.seconds)
        return
    ONLY_ATTACKS.update(args.attack)
    only = set(args.only or ["reward", "synth", "inference"])
    tmp = Path(tempfile.mkdtemp(prefix="mvp-abuse-"))
    results = {}

    if "reward" in only:
        results["reward"] = abuse_reward(tmp, args)
    if "synth" in only:
        results["synth"] = abuse_synth(tmp, args)
    if "inference" in only:
        results["inference"] = abuse_inference(tmp, args)
    summary = {
        "bench": "abuse",
        "seconds_per_service": args.seconds,
        **results,
        "health_p99_ms_abuse_max": max(r["health_p99_ms_abuse"] for r in results.values()),
        "rss_growth_mb_max": max(r["rss_growth_mb"] for r in results.values()),
        "meets_bar": all(r["meets_bar"] for r in results.values()),
    }
    print(json.dumps(summary))


def abuse_reward(tmp: Path, args: argparse.Namespace) -> dict:
    import grpc

    from mvp.clients import RewardClient
    from tests.procs import start_reward

    # idle streams are ended after 2 s here (10 s by default) so the run sees their slots come back
    env = {"MVP_REWARD_STREAM_IDLE_S": "2", **{k: v for k, v in os.environ.items() if k.startswith("MVP_REWARD_")}}
    reward = start_reward(tmp, "--log-level", "WARNING", env=env)
    try:
        addr = f"127.0.0.1:{reward.ports['grpc']}"
        client = RewardClient(addr)
        big_label = json.dumps({"answer": list(range(1, 1001)), "num_candidates": 1000})
        url = f"http://127.0.0.1:{reward.ports['http']}/score"
        # ~14.9 MiB of JSON (4,000 completions of 3.7 KiB, under max_batch and max_message_mb): sixteen
        # at once would be ~240 MiB in flight
        small_label = json.dumps({"answer": [1], "num_candidates": 2})
        big_body = json.dumps({"query": ["<answer>1</answer>" + " " * 3880] * 4000, "labels": [small_label] * 4000})

        def idle_streams(stop, sent, codes):
            """32 authenticated-looking ScoreStreams that never send: each is ended after the idle time
            and frees its slot."""

            def idle():
                while not stop.is_set():
                    time.sleep(0.1)
                    yield from ()

            def hold(_):
                try:
                    for _ in client.stub.ScoreStream(idle()):
                        pass
                    return "OK"
                except grpc.RpcError as exc:
                    return exc.code().name

            with ThreadPoolExecutor(32) as pool:
                for code in pool.map(hold, range(32)):
                    sent["idle_stream"] += 1
                    codes[f"idle_stream_{code}"] += 1

        def big_bodies(stop, sent, codes):
            with ThreadPoolExecutor(16) as pool:
                while not stop.is_set():
                    for code in pool.map(lambda _: http_post(url, big_body.encode()), range(16)):
                        sent["big_body"] += 1
                        codes[f"big_body_{code}"] += 1

        def oversize(stop, sent, codes):
            while not stop.is_set():
                body = json.dumps({"query": ["<answer>1</answer>"] * 5000, "labels": [big_label] * 5000}).encode()
                codes[http_post(url, body)] += 1
                sent["oversize"] += 1

        def slow(stop, sent, codes):
            slowloris("127.0.0.1", reward.ports["http"], args.slow, stop, sent)

        def heavy():
            try:
                client.score(["<answer>1, 2</answer>"] * 2000, [big_label] * 2000)
                return "OK"
            except grpc.RpcError as exc:
                return exc.code().name

        attacks = [oversize, slow, burst(heavy, args.burst), idle_streams, big_bodies]
        return run_abuse("reward", reward.popen.pid, addr, attacks, args.seconds)
    finally:
        client.close()
        reward.stop()


def abuse_synth(tmp: Path, args: argparse.Namespace) -> dict:
    import grpc

    from mvp.clients import SynthClient
    from mvp.v1 import sample_pb2
    from tests.procs import start_store, start_synth

    store = start_store(tmp)
    synth = start_synth(tmp, store.ports["s3"], "--allowed-buckets", "mvp")
    try:
        addr = f"127.0.0.1:{synth.ports['grpc']}"
        channel = grpc.insecure_channel(addr)
        client = SynthClient(addr)
        config = sample_pb2.SynthesisConfig(num_frames=6, num_masked=2)

        def junk():
            try:
                client.submit_job("s3://mvp/../etc/", "s3://mvp/out", config, job_id=os.urandom(8).hex())
                return "OK"
            except grpc.RpcError as exc:
                return exc.code().name

        def hungry(stop, sent, codes):
            """SynthesizeVideo asking for 30 fps at 640 px and every decoded frame (1.55 GB for a 40 s
            video before the operator caps): refused before the video is fetched."""
            greedy = sample_pb2.SynthesisConfig(fps=30, image_size=640, max_decoded_frames=2**31 - 1, max_pixels=2**40)
            while not stop.is_set():
                try:
                    client.synthesize_video("s3://mvp/videos/any.mp4", "s3://mvp/out", greedy, timeout=10)
                    codes["hungry_OK"] += 1
                except grpc.RpcError as exc:
                    codes[f"hungry_{exc.code().name}"] += 1
                sent["hungry"] += 1

        def oversize(stop, sent, codes):
            raw = channel.unary_unary("/mvp.v1.SynthesisService/SubmitJob", None, None)
            while not stop.is_set():
                try:
                    raw(os.urandom(8 << 20), timeout=10)
                    codes["OK"] += 1
                except grpc.RpcError as exc:
                    codes[exc.code().name] += 1
                sent["oversize"] += 1

        return run_abuse("synth", synth.popen.pid, addr, [oversize, hungry, burst(junk, args.burst)], args.seconds)
    finally:
        channel.close()
        client.close()
        synth.stop()
        store.stop()


def abuse_inference(tmp: Path, args: argparse.Namespace) -> dict:
    from tests.procs import start_serve

    serve = start_serve(tmp, "--max-queue", "8", "--log-level", "WARNING")
    try:
        base = f"http://127.0.0.1:{serve.ports['http']}"

        def oversize(stop, sent, codes):
            while not stop.is_set():
                codes[http_post(base + "/v1/chat/completions", b" " * (40 << 20))] += 1
                sent["oversize"] += 1

        def slow(stop, sent, codes):
            slowloris("127.0.0.1", serve.ports["http"], args.slow, stop, sent)

        # made before the attack starts: a video whose frames take long to decode (1,000 frames of
        # 512x512 in one second: at 1 fps every frame is decoded, under the 1,024-frame budget, so
        # only the decode deadline stops it), a 20 MiB prompt, 32 images of 4096x4096 (tiny PNGs)
        slow_video = chat(
            [{"type": "video_url", "video_url": {"url": data_url(encode_video(1000, 1000, 512), "video/mp4")}}]
        )
        huge_prompt = chat("word " * (4 << 20))
        giant = data_url(blank_png(4096, 4096), "image/png")
        many_images = chat([{"type": "image_url", "image_url": {"url": giant}}] * 32)

        def sender(name: str, body: bytes, workers: int):
            def attack(stop, sent, codes):
                with ThreadPoolExecutor(workers) as pool:
                    while not stop.is_set():
                        for code in pool.map(lambda _: http_post(base + "/v1/chat/completions", body), range(workers)):
                            sent[name] += 1
                            codes[f"{name}_{code}"] += 1

            return attack

        attacks = [
            oversize,
            slow,
            burst(lambda: http_post(base + "/v1/chat/completions", CHAT), args.burst),
            sender("slow_video", slow_video, 6),
            sender("huge_prompt", huge_prompt, 2),
            sender("many_images", many_images, 3),
        ]
        return run_abuse("inference", serve.popen.pid, base, attacks, args.seconds)
    finally:
        serve.stop()


if __name__ == "__main__":
    main()
