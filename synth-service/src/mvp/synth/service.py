"""`mvp synth serve`: the synthesis library behind ``mvp.v1.SynthesisService``.

Corpus jobs run in a background thread each, fanning videos out over worker processes
(``mvp.synth.corpus``). A job's spec is persisted under ``state_uri`` when configured; a restarted
server resumes every unfinished job that still passes every check a new submission gets (a job
that does not is FAILED with the reason), and because progress is derived from the committed
manifests, the result is exactly what an uninterrupted run gives. Finished jobs beyond
``max_finished_jobs`` are forgotten (their state files stay).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc

from mvp.common.grpc_server import GrpcServer, ServiceBinding, serve
from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage, StorageError, join
from mvp.common.synth_config import SynthConfig
from mvp.synth import metrics
from mvp.synth.access import JOB_ID, AccessDeniedError, AccessPolicy
from mvp.synth.corpus import CorpusError, CorpusProgress, normalise_output, run_corpus
from mvp.synth.settings import SynthServerSettings
from mvp.synth.video import DecodeCeilings, process_video
from mvp.v1 import synthesis_pb2, synthesis_pb2_grpc

log = logging.getLogger(__name__)
TERMINAL = {synthesis_pb2.JOB_STATE_SUCCEEDED, synthesis_pb2.JOB_STATE_FAILED, synthesis_pb2.JOB_STATE_CANCELLED}


@dataclass
class JobRecord:
    job: synthesis_pb2.Job
    config: SynthConfig
    cancel: threading.Event = field(default_factory=threading.Event)
    user_cancelled: bool = False
    version: int = 0
    last_result: synthesis_pb2.VideoResult | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def job_id_for(request: synthesis_pb2.SubmitJobRequest, config: SynthConfig) -> str:
    output = normalise_output(request.output_uri)
    key = f"{request.input_uri}|{output}|{config.digest()}|{request.shard_index}/{request.shard_count}"
    return "job-" + hashlib.sha256(key.encode()).hexdigest()[:16]


class JobManager:
    """Owns the corpus jobs of this replica."""

    def __init__(self, settings: SynthServerSettings, store: StoreSettings) -> None:
        self.settings = settings
        self.store = store
        self.storage = Storage(store)
        self.jobs: dict[str, JobRecord] = {}
        self.finished: OrderedDict[str, None] = OrderedDict()  # ids of the finished jobs in self.jobs, oldest first
        self.lock = threading.Lock()
        self.access = AccessPolicy(settings)
        self.ceilings = DecodeCeilings(settings.max_pixels, settings.max_decoded_frames)

    def _persist(self, record: JobRecord) -> None:
        if not self.settings.state_uri:
            return
        spec = {
            "job_id": record.job.job_id,
            "input_uri": record.job.input_uri,
            "output_uri": record.job.output_uri,
            "config": record.config.model_dump(),
            "shard_index": record.job.shard_index,
            "shard_count": record.job.shard_count,
            "state": synthesis_pb2.JobState.Name(record.job.state),
            "error": record.job.error,
        }
        self.storage.put_bytes(join(self.settings.state_uri, f"{record.job.job_id}.json"), json.dumps(spec).encode())

    def resume_unfinished(self) -> list[str]:
        """Restarts every persisted job that had not reached a terminal state and still passes every
        check of ``SubmitJob`` (``AccessPolicy.job``: paths, job id, caps, model); one that does not
        is FAILED with the reason, in memory and in its state file, and never runs."""
        if not self.settings.state_uri:
            return []
        resumed = []
        try:
            infos = list(self.storage.list(self.settings.state_uri))
        except StorageError:
            return []
        for info in infos:
            if "/quarantine/" in info.uri[len(self.settings.state_uri) :]:
                continue
            try:
                spec = json.loads(self.storage.get_bytes(info.uri))
                if synthesis_pb2.JobState.Value(spec["state"]) in TERMINAL:
                    continue
                job_id = self.access.job_id(spec["job_id"])
                if info.uri.rsplit("/", 1)[-1] != f"{job_id}.json":
                    raise ValueError(f"job_id {job_id!r} is not the name of its file")
                request = synthesis_pb2.SubmitJobRequest(
                    input_uri=spec["input_uri"],
                    output_uri=spec["output_uri"],
                    job_id=job_id,
                    shard_index=spec["shard_index"],
                    shard_count=spec["shard_count"],
                )
                config = SynthConfig.model_validate(spec["config"])
            except (ValueError, KeyError, TypeError, AccessDeniedError, StorageError) as exc:
                self._quarantine(info.uri, f"{type(exc).__name__}: {exc}")
                continue
            try:
                self.submit(self.access.job(request, config), config)
            except (AccessDeniedError, ResourceWarning, StorageError) as exc:
                self._refuse(info.uri, spec, config, f"not resumed: {exc}")
                continue
            resumed.append(job_id)
        if resumed:
            log.info("resumed unfinished jobs", extra={"jobs": resumed})
        return resumed

    def _refuse(self, uri: str, spec: dict, config: SynthConfig, reason: str) -> None:
        """A persisted job that fails a check of ``SubmitJob``: FAILED with the reason, never run; its
        state file keeps what it named and says FAILED, so the next start does not try it again."""
        log.error("persisted job not resumed", extra={"uri": uri, "job_id": spec["job_id"], "reason": reason})
        job = synthesis_pb2.Job(
            job_id=spec["job_id"], state=synthesis_pb2.JOB_STATE_FAILED, config=config.to_proto(), error=reason[:1000]
        )
        with self.lock:
            self.jobs[job.job_id] = JobRecord(job=job, config=config)
            self._finished_locked(job.job_id)
        try:
            self.storage.put_bytes(uri, json.dumps({**spec, "state": "JOB_STATE_FAILED", "error": reason}).encode())
        except StorageError as exc:
            log.error("could not mark job state FAILED", extra={"uri": uri, "error": str(exc)})

    def _finished_locked(self, job_id: str) -> None:
        """Counts the job as finished, and forgets the oldest finished jobs beyond
        ``max_finished_jobs`` (a client still watching one keeps its record). Needs ``self.lock``."""
        self.finished[job_id] = None
        self.finished.move_to_end(job_id)
        while len(self.finished) > self.settings.max_finished_jobs:
            old, _ = self.finished.popitem(last=False)
            record = self.jobs.get(old)
            if record is not None and record.job.state in TERMINAL:
                del self.jobs[old]

    def _end(self, record: JobRecord, **changes: object) -> None:
        """A job's last update and its count among the finished jobs, in one step: whoever sees it
        finished (WatchJob) and then lists the jobs finds the eviction done."""
        with self.lock:
            self._update(record, **changes)
            self._finished_locked(record.job.job_id)

    def listing(self) -> list[JobRecord]:
        """Every job in memory: the unfinished ones, then the finished ones, newest first."""
        with self.lock:
            unfinished = [r for r in self.jobs.values() if r.job.state not in TERMINAL]
            return unfinished + [self.jobs[j] for j in reversed(self.finished) if j in self.jobs]

    def _quarantine(self, uri: str, reason: str) -> None:
        """Moves an unreadable job spec aside (``<state_uri>/quarantine/``) so the server still
        starts, and reports the job FAILED with the reason."""
        name = uri.rsplit("/", 1)[-1]
        log.error("unreadable job state quarantined", extra={"uri": uri, "reason": reason})
        try:
            data = self.storage.get_bytes(uri)
            self.storage.put_bytes(join(self.settings.state_uri, "quarantine", name), data)
            self.storage.delete(uri)
        except StorageError as exc:
            log.error("could not move job state aside", extra={"uri": uri, "error": str(exc)})
        job_id = name.removesuffix(".json")
        if JOB_ID.fullmatch(job_id):
            job = synthesis_pb2.Job(
                job_id=job_id, state=synthesis_pb2.JOB_STATE_FAILED, error=f"unreadable job state: {reason}"[:500]
            )
            with self.lock:
                self.jobs[job_id] = JobRecord(job=job, config=SynthConfig())
                self._finished_locked(job_id)

    def submit(self, request: synthesis_pb2.SubmitJobRequest, config: SynthConfig) -> JobRecord:
        job_id = request.job_id or job_id_for(request, config)
        with self.lock:
            existing = self.jobs.get(job_id)
            if existing is not None and existing.job.state not in TERMINAL:
                return existing
            running = sum(1 for r in self.jobs.values() if r.job.state not in TERMINAL)
            if running >= self.settings.max_jobs:
                raise ResourceWarning(f"{running} jobs already running (max_jobs={self.settings.max_jobs})")
            job = synthesis_pb2.Job(
                job_id=job_id,
                state=synthesis_pb2.JOB_STATE_PENDING,
                input_uri=request.input_uri,
                output_uri=normalise_output(request.output_uri),
                config=config.to_proto(),
                shard_index=request.shard_index,
                shard_count=request.shard_count,
            )
            record = JobRecord(job=job, config=config)
            self.jobs[job_id] = record
            self.finished.pop(job_id, None)
        try:
            self._persist(record)
        except Exception:
            with self.lock:  # a job that cannot be persisted is rejected, and frees its slot
                if self.jobs.get(job_id) is record:
                    del self.jobs[job_id]
            raise
        threading.Thread(target=self._run, args=(record,), name=f"job-{job_id}", daemon=True).start()
        return record

    def _update(self, record: JobRecord, **changes: object) -> None:
        with record.lock:
            for key, value in changes.items():
                setattr(record.job, key, value)
            record.version += 1

    def _run(self, record: JobRecord) -> None:
        job = record.job
        self._update(record, state=synthesis_pb2.JOB_STATE_RUNNING)
        self._refresh_gauges()

        def on_total(total: int) -> None:
            self._update(record, videos_total=total)
            metrics.QUEUE_DEPTH.inc(total)

        def on_result(result: synthesis_pb2.VideoResult, progress: CorpusProgress, fresh: bool) -> None:
            if fresh:
                metrics.record_video(result)
            metrics.QUEUE_DEPTH.dec()
            with record.lock:
                job.results.append(result)
                job.videos_ok = progress.count(synthesis_pb2.VIDEO_STATUS_OK)
                job.videos_skipped = progress.count(synthesis_pb2.VIDEO_STATUS_SKIPPED)
                job.videos_failed = progress.count(synthesis_pb2.VIDEO_STATUS_FAILED)
                job.samples_written = progress.samples
                record.last_result = result
                record.version += 1

        try:
            progress = run_corpus(
                self.store,
                job.input_uri,
                job.output_uri,
                record.config,
                workers=self.settings.workers,
                shard_index=job.shard_index,
                shard_count=job.shard_count,
                on_result=on_result,
                on_total=on_total,
                cancel=record.cancel,
                ceilings=self.ceilings,
            )
            remaining = job.videos_total - len(progress.results)
            metrics.QUEUE_DEPTH.dec(max(0, remaining))
            if record.cancel.is_set() and not record.user_cancelled:
                # Interrupted by shutdown: stays RUNNING in the persisted spec so a restart resumes it.
                log.info("job interrupted by shutdown", extra={"job_id": job.job_id, "remaining": remaining})
                return
            state = synthesis_pb2.JOB_STATE_CANCELLED if record.cancel.is_set() else synthesis_pb2.JOB_STATE_SUCCEEDED
            self._end(record, state=state)
        except (CorpusError, StorageError) as exc:
            log.error("job failed", extra={"job_id": job.job_id, "error": str(exc)})
            self._end(record, state=synthesis_pb2.JOB_STATE_FAILED, error=str(exc))
        except Exception as exc:
            log.exception("job crashed", extra={"job_id": job.job_id})
            self._end(record, state=synthesis_pb2.JOB_STATE_FAILED, error=f"internal error: {exc!r}")
        self._persist(record)
        self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        counts: dict[str, int] = {}
        for record in list(self.jobs.values()):
            name = synthesis_pb2.JobState.Name(record.job.state).removeprefix("JOB_STATE_").lower()
            counts[name] = counts.get(name, 0) + 1
        for state in ("pending", "running", "succeeded", "failed", "cancelled"):
            metrics.JOBS.labels(state).set(counts.get(state, 0))

    def snapshot(self, record: JobRecord, summary_only: bool) -> synthesis_pb2.Job:
        with record.lock:
            copy = synthesis_pb2.Job()
            copy.CopyFrom(record.job)
        if summary_only:
            del copy.results[:]
        return copy


class SynthServicer(synthesis_pb2_grpc.SynthesisServiceServicer):
    def __init__(self, manager: JobManager, settings: SynthServerSettings) -> None:
        self.manager = manager
        self.settings = settings
        self.executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="synth-video")

    async def _config(self, message, context: grpc.aio.ServicerContext) -> SynthConfig:
        try:
            return SynthConfig.from_proto(message if message.ByteSize() else None)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid synthesis config: {exc}")
            raise

    async def _checked(self, context: grpc.aio.ServicerContext, check, *args):
        """Runs an access check; a denial ends the call before any work is done."""
        try:
            return check(*args)
        except AccessDeniedError as exc:
            code = grpc.StatusCode.PERMISSION_DENIED if exc.permission else grpc.StatusCode.INVALID_ARGUMENT
            await context.abort(code, str(exc))
            raise

    async def _record(self, job_id: str, context: grpc.aio.ServicerContext) -> JobRecord:
        record = self.manager.jobs.get(job_id)
        if record is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no job {job_id[:200]!r} on this replica (finished jobs beyond max_finished_jobs are forgotten; "
                "their state stays under state_uri)",
            )
        return record  # type: ignore[return-value]

    async def SynthesizeVideo(self, request, context):  # noqa: N802
        if not request.video_uri or not request.output_uri:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "video_uri and output_uri are required")
        access = self.manager.access
        video_uri = await self._checked(context, access.uri, request.video_uri, "video_uri")
        output_uri = await self._checked(context, access.uri, request.output_uri, "output_uri")
        config = await self._checked(context, access.config, await self._config(request.config, context))
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(
                self.executor,
                process_video,
                self.manager.storage,
                video_uri,
                normalise_output(output_uri),
                config,
                self.manager.ceilings,
            )
        except StorageError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"cannot write output: {exc}")
        metrics.record_video(outcome.result)
        return synthesis_pb2.SynthesizeVideoResponse(result=outcome.result, samples=outcome.samples)

    async def SubmitJob(self, request, context):  # noqa: N802
        config = await self._config(request.config, context)
        request = await self._checked(context, self.manager.access.job, request, config)
        try:
            record = self.manager.submit(request, config)
        except ResourceWarning as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except StorageError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"job not accepted: its state could not be saved: {exc}")
        return synthesis_pb2.SubmitJobResponse(job=self.manager.snapshot(record, True))

    async def GetJob(self, request, context):  # noqa: N802
        record = await self._record(request.job_id, context)
        return synthesis_pb2.GetJobResponse(job=self.manager.snapshot(record, request.summary_only))

    async def ListJobs(self, request, context):  # noqa: N802
        """Every job's summary, unfinished ones first, then finished ones newest first, as many as fit
        in half of ``max_message_mb``; how many did not is in trailing metadata ``mvp-jobs-omitted``."""
        budget = self.settings.max_message_mb * 1024 * 1024 // 2
        response, size, omitted = synthesis_pb2.ListJobsResponse(), 0, 0
        for record in self.manager.listing():
            job = self.manager.snapshot(record, True)
            job_size = job.ByteSize() + 8  # + the field's tag and length
            if size + job_size > budget:
                omitted += 1
                continue
            size += job_size
            response.jobs.append(job)
        if omitted:
            context.set_trailing_metadata((("mvp-jobs-omitted", str(omitted)),))
        return response

    async def CancelJob(self, request, context):  # noqa: N802
        record = await self._record(request.job_id, context)
        record.user_cancelled = True
        record.cancel.set()
        return synthesis_pb2.CancelJobResponse(job=self.manager.snapshot(record, True))

    async def WatchJob(self, request, context):  # noqa: N802
        record = await self._record(request.job_id, context)
        seen = -1
        while True:
            version, state = record.version, record.job.state
            if version != seen:
                seen = version
                update = synthesis_pb2.WatchJobResponse(job=self.manager.snapshot(record, True))
                if record.last_result is not None:
                    update.last_result.CopyFrom(record.last_result)
                yield update
            if state in TERMINAL and version == record.version:
                return
            await asyncio.sleep(0.1)


async def run_server(settings: SynthServerSettings, store: StoreSettings) -> None:
    manager = JobManager(settings, store)
    binding = ServiceBinding(
        synthesis_pb2_grpc.add_SynthesisServiceServicer_to_server,
        SynthServicer(manager, settings),
        synthesis_pb2.DESCRIPTOR.services_by_name["SynthesisService"].full_name,
    )
    server = GrpcServer(settings, [binding])
    # Before serving: a client that sees SERVING can already watch every resumed job.
    await asyncio.get_running_loop().run_in_executor(None, manager.resume_unfinished)

    async def stopping() -> None:
        # Running jobs stop taking new videos; committed videos stay committed, in-flight ones
        # are redone when the job is resumed.
        for record in manager.jobs.values():
            record.cancel.set()

    await serve(server, on_stopping=stopping)


def main(settings: SynthServerSettings, store: StoreSettings) -> None:
    asyncio.run(run_server(settings, store))
