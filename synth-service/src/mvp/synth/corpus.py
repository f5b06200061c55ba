"""Corpus runs: every video under an input prefix, fanned out over worker processes, resumable.

Resume is derived from the output itself: a video whose manifest exists is done (its outcome is
read back, not recomputed). A killed worker loses only its in-flight video, which is redone; a
video that kills workers twice is failed with reason ``worker_crashed``. Exports are rebuilt from
the manifests at the end, so they always match exactly the committed videos.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.json_format import ParseDict

from mvp.common.sample import frame_uris, label_json
from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage, is_s3, join
from mvp.common.synth_config import SynthConfig
from mvp.synth.video import DecodeCeilings, manifest_uri, process_video
from mvp.v1 import synthesis_pb2

log = logging.getLogger(__name__)

_STATUS_NAMES = {
    synthesis_pb2.VIDEO_STATUS_OK: "ok",
    synthesis_pb2.VIDEO_STATUS_SKIPPED: "skipped",
    synthesis_pb2.VIDEO_STATUS_FAILED: "failed",
}
MAX_WORKER_CRASHES = 2


@dataclass
class _CrashLedger:
    """Worker deaths per video, and how many videos the workers did finish in this run."""

    crashes: dict[str, int] = field(default_factory=dict)
    finished: int = 0


class CorpusError(RuntimeError):
    """The run itself cannot proceed (missing input, conflicting output); nothing was written."""


def status_name(status: int) -> str:
    return _STATUS_NAMES.get(status, "unknown")


def list_videos(storage: Storage, input_uri: str) -> list[str]:
    """Every object under the input prefix except hidden files, sorted (stable order)."""
    from mvp.common.storage import NotFoundError

    try:
        uris = [o.uri for o in storage.list(input_uri)]
    except NotFoundError as exc:
        raise CorpusError(f"input {input_uri} not found: {exc}") from None
    return sorted(u for u in uris if not u.rsplit("/", 1)[-1].startswith("."))


def in_shard(uri: str, shard_index: int, shard_count: int) -> bool:
    if shard_count <= 1:
        return True
    return int(hashlib.sha256(uri.encode()).hexdigest()[:8], 16) % shard_count == shard_index


@dataclass
class CorpusProgress:
    total: int = 0
    results: list[synthesis_pb2.VideoResult] = field(default_factory=list)

    def count(self, status: int) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def samples(self) -> int:
        return sum(r.num_samples for r in self.results)


# Worker-process state: one Storage (one connection pool) per worker.
_worker_storage: Storage | None = None


def _init_worker(store: dict, owner_pid: int) -> None:
    global _worker_storage
    _worker_storage = Storage(StoreSettings.model_validate(store))
    threading.Thread(target=_die_with, args=(owner_pid,), name="owner-watch", daemon=True).start()


def _die_with(owner_pid: int, interval_s: float = 0.5) -> None:
    """Exits this worker as soon as the process that owns the pool is gone (kill -9 included), so a
    restarted server never races an orphan committing manifests. A forkserver worker's parent is
    the forkserver, not the owner: the owner's pid is watched directly."""
    while _alive(owner_pid):
        time.sleep(interval_s)
    os._exit(70)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # PermissionError: the pid now belongs to someone else
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: signal 0 is all we can know
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _work(uri: str, output: str, config_json: str, ceilings: DecodeCeilings | None) -> bytes:
    assert _worker_storage is not None
    outcome = process_video(_worker_storage, uri, output, SynthConfig.model_validate_json(config_json), ceilings)
    return outcome.result.SerializeToString()


def read_manifest(storage: Storage, output: str, uri: str) -> dict | None:
    if not storage.exists(manifest_uri(output, uri)):
        return None
    return json.loads(storage.get_bytes(manifest_uri(output, uri)))


def normalise_output(output: str) -> str:
    return output.rstrip("/") if is_s3(output) else str(Path(output).resolve())


def run_corpus(
    store: StoreSettings,
    input_uri: str,
    output: str,
    config: SynthConfig,
    *,
    workers: int = 2,
    shard_index: int = 0,
    shard_count: int = 0,
    on_result: Callable[[synthesis_pb2.VideoResult, CorpusProgress, bool], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
    ceilings: DecodeCeilings | None = None,
) -> CorpusProgress:
    """Processes every video under ``input_uri`` not yet committed under ``output``, then rebuilds
    the exports. Returns per-video outcomes (committed earlier ones included). ``on_result`` gets
    each outcome with ``fresh=False`` for videos committed by an earlier run; ``ceilings`` are the
    operator's decode limits over the config's (``process_video``)."""
    storage = Storage(store)
    output = normalise_output(output)
    if is_s3(output):
        bucket = output.removeprefix("s3://").split("/", 1)[0]
        if not storage.bucket_exists(bucket):
            raise CorpusError(f"output bucket {bucket!r} does not exist (create it first)")
    uris = [u for u in list_videos(storage, input_uri) if in_shard(u, shard_index, shard_count)]
    progress = CorpusProgress(total=len(uris))
    if on_total:
        on_total(len(uris))
    digest = config.digest()
    pending: list[str] = []
    for uri in uris:
        manifest = read_manifest(storage, output, uri)
        if manifest is None:
            pending.append(uri)
            continue
        if manifest.get("config_digest") != digest:
            raise CorpusError(
                f"{output} already holds samples made with another config (digest "
                f"{manifest.get('config_digest')} != {digest}); use a new output prefix"
            )
        result = ParseDict(manifest["result"], synthesis_pb2.VideoResult())
        progress.results.append(result)
        if on_result:
            on_result(result, progress, False)
    log.info("corpus run", extra={"videos": len(uris), "already_done": len(uris) - len(pending), "output": output})
    crashes = _CrashLedger()
    barren_pools = 0
    config_json = config.model_dump_json()
    store_dict = {k: (v.get_secret_value() if hasattr(v, "get_secret_value") else v) for k, v in store}
    while pending and not (cancel and cancel.is_set()):
        before = len(progress.results)
        pending = _run_pool(
            storage,
            pending,
            output,
            config,
            config_json,
            ceilings,
            store_dict,
            workers,
            crashes,
            progress,
            on_result,
            cancel,
        )
        if pending and len(progress.results) == before:
            barren_pools += 1
            if barren_pools >= MAX_WORKER_CRASHES + 1:
                # Not one video's fault: workers cannot run at all (memory limit, broken install).
                raise CorpusError(
                    f"worker processes died {barren_pools} times in a row without finishing any video; "
                    "check memory limits and the worker logs"
                )
        else:
            barren_pools = 0
    if cancel and cancel.is_set():
        write_exports(storage, output, uris, config)
        return progress
    # One of R shard jobs exports the whole corpus (its shard and every other shard's committed
    # videos), so whichever finishes last leaves the complete dataset; a shard committed while this
    # export was being written triggers another export (a few at most: a shard still running is the
    # one that will write the final export), so a slower writer never leaves a stale one.
    export_uris = list_videos(storage, input_uri) if shard_count > 1 else uris
    for _ in range(5):
        summary = write_exports(storage, output, export_uris, config)
        waiting = [v["uri"] for v in summary["videos"] if v["status"] == "pending"]
        if not waiting or not any(read_manifest(storage, output, u) is not None for u in waiting):
            break
    return progress


def _run_pool(
    storage, pending, output, config, config_json, ceilings, store_dict, workers, crashes, progress, on_result, cancel
):
    """Runs ``pending`` on a fresh pool; returns the videos to retry after a worker crash."""
    retry: list[str] = []
    # forkserver, not fork: the parent may run gRPC threads, which must never be forked.
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(store_dict, os.getpid())
    ) as pool:
        queue = list(pending)
        running: dict[Future, str] = {}

        def fill() -> bool:
            """Submits queued videos; False if the pool broke."""
            while queue and len(running) < workers * 2 and not (cancel and cancel.is_set()):
                uri = queue[0]
                try:
                    running[pool.submit(_work, uri, output, config_json, ceilings)] = uri
                except BrokenProcessPool:
                    return False
                queue.pop(0)
            return True

        broken = not fill()
        while running and not broken:
            done, _ = wait(running, return_when=FIRST_COMPLETED, timeout=0.5)
            for future in done:
                uri = running.pop(future)
                try:
                    result = synthesis_pb2.VideoResult.FromString(future.result())
                except BrokenProcessPool:
                    count = crashes.crashes[uri] = crashes.crashes.get(uri, 0) + 1
                    # Blame the video only once workers have shown they can finish others;
                    # otherwise the workers themselves are broken (see the barren-pool check).
                    if count >= MAX_WORKER_CRASHES and crashes.finished > 0:
                        result = _crashed(storage, output, uri, config)
                    else:
                        retry.append(uri)
                        continue
                crashes.finished += 1
                progress.results.append(result)
                if on_result:
                    on_result(result, progress, True)
            if retry or any(f.done() and f.exception() for f in running):
                # The pool is broken: everything still running is lost with it; redo it.
                for uri in running.values():
                    if uri not in retry:
                        retry.append(uri)
                log.warning("worker process died; restarting the pool", extra={"requeued": len(retry)})
                return retry + queue
            broken = not fill()
        if broken:
            log.warning("worker pool broke while submitting; restarting it", extra={"requeued": len(running)})
            return retry + list(running.values()) + queue
    return retry


def _crashed(storage: Storage, output: str, uri: str, config: SynthConfig) -> synthesis_pb2.VideoResult:
    from mvp.synth.video import commit

    result = synthesis_pb2.VideoResult(
        uri=uri,
        status=synthesis_pb2.VIDEO_STATUS_FAILED,
        reason_code="worker_crashed",
        reason=f"the worker process died {MAX_WORKER_CRASHES} times on this video (out of memory or a decoder crash)",
    )
    commit(storage, output, uri, config, result, [])
    return result


def write_exports(storage: Storage, output: str, uris: list[str], config: SynthConfig) -> dict:
    """Rebuilds summary.json, samples.jsonl (full mvp.v1.Sample JSON, loadable with
    ``datasets.load_dataset("json", ...)``) and openrlhf.jsonl from the committed manifests."""
    videos, sample_lines, openrlhf_lines = [], [], []
    for uri in uris:
        manifest = read_manifest(storage, output, uri)
        if manifest is None:
            videos.append({"uri": uri, "status": "pending", "reason": "not processed yet", "num_samples": 0})
            continue
        result = manifest["result"]
        status = status_name(synthesis_pb2.VideoStatus.Value(result.get("status", "VIDEO_STATUS_UNSPECIFIED")))
        entry = {
            "uri": uri,
            "status": status,
            "num_samples": int(result.get("num_samples", 0)),
            "frames_decoded": int(result.get("frames_decoded", 0)),
            "seconds": result.get("seconds", 0.0),
        }
        if status != "ok":
            entry["reason_code"] = result.get("reason_code", "")
            entry["reason"] = result.get("reason", "")
        videos.append(entry)
        if manifest.get("samples_uri"):
            for line in storage.get_bytes(manifest["samples_uri"]).decode().splitlines():
                sample = json.loads(line)
                sample_lines.append(line)
                openrlhf_lines.append(json.dumps(openrlhf_row(sample)))
    totals = {
        "videos": len(uris),
        **{s: sum(1 for v in videos if v["status"] == s) for s in ("ok", "skipped", "failed", "pending")},
        "samples": len(sample_lines),
    }
    summary = {"output": output, "config": config.model_dump(), "totals": totals, "videos": videos}
    storage.put_bytes(join(output, "samples.jsonl"), "".join(x + "\n" for x in sample_lines).encode())
    storage.put_bytes(join(output, "openrlhf.jsonl"), "".join(x + "\n" for x in openrlhf_lines).encode())
    storage.put_bytes(join(output, "summary.json"), json.dumps(summary, indent=2).encode(), "application/json")
    return summary


def openrlhf_row(sample: dict) -> dict:
    """OpenRLHF's prompt-dataset row: ``--input_key prompt --label_key label --image_key images``.

    ``label`` is a JSON string of the mvp.v1.Label fields (what the reward-service reads)."""
    return {"id": sample["id"], "prompt": sample["prompt"], "label": label_json(sample), "images": frame_uris(sample)}
