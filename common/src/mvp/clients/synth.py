"""Client of ``mvp.v1.SynthesisService``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc

from mvp.clients.channel import BaseClient, ClientConfig
from mvp.v1 import sample_pb2, synthesis_pb2, synthesis_pb2_grpc


class SynthClient(BaseClient):
    """Submits and follows synthesis jobs on a running synth-service."""

    ENV_PREFIX = "MVP_SYNTH"

    def __init__(self, config: ClientConfig | str) -> None:
        super().__init__(config)
        self.stub = synthesis_pb2_grpc.SynthesisServiceStub(self.channel)

    def _call(self, method, request, timeout: float | None = None):
        try:
            return method(
                request,
                timeout=timeout or self.config.timeout_s,
                metadata=self.metadata,
                wait_for_ready=self.config.wait_for_ready,
            )
        except grpc.RpcError as exc:
            raise self._unavailable(exc) from exc

    def synthesize_video(
        self, video_uri: str, output_uri: str, config: sample_pb2.SynthesisConfig | None = None, timeout: float = 600
    ) -> synthesis_pb2.SynthesizeVideoResponse:
        request = synthesis_pb2.SynthesizeVideoRequest(video_uri=video_uri, output_uri=output_uri, config=config)
        return self._call(self.stub.SynthesizeVideo, request, timeout)

    def submit_job(
        self,
        input_uri: str,
        output_uri: str,
        config: sample_pb2.SynthesisConfig | None = None,
        *,
        job_id: str = "",
        shard_index: int = 0,
        shard_count: int = 0,
    ) -> synthesis_pb2.Job:
        request = synthesis_pb2.SubmitJobRequest(
            input_uri=input_uri,
            output_uri=output_uri,
            config=config,
            job_id=job_id,
            shard_index=shard_index,
            shard_count=shard_count,
        )
        return self._call(self.stub.SubmitJob, request).job

    def get_job(self, job_id: str, *, summary_only: bool = False) -> synthesis_pb2.Job:
        return self._call(self.stub.GetJob, synthesis_pb2.GetJobRequest(job_id=job_id, summary_only=summary_only)).job

    def list_jobs(self) -> list[synthesis_pb2.Job]:
        return list(self._call(self.stub.ListJobs, synthesis_pb2.ListJobsRequest()).jobs)

    def cancel_job(self, job_id: str) -> synthesis_pb2.Job:
        return self._call(self.stub.CancelJob, synthesis_pb2.CancelJobRequest(job_id=job_id)).job

    def watch_job(self, job_id: str, timeout: float | None = None) -> Iterator[synthesis_pb2.WatchJobResponse]:
        """Yields the job's state on every change until it ends (or ``timeout`` passes)."""
        try:
            yield from self.stub.WatchJob(
                synthesis_pb2.WatchJobRequest(job_id=job_id),
                timeout=timeout,
                metadata=self.metadata,
                wait_for_ready=self.config.wait_for_ready,
            )
        except grpc.RpcError as exc:
            raise self._unavailable(exc) from exc

    def run_job(
        self,
        input_uri: str,
        output_uri: str,
        config: sample_pb2.SynthesisConfig | None = None,
        *,
        on_update: Callable[[synthesis_pb2.Job], None] | None = None,
        timeout: float | None = None,
    ) -> synthesis_pb2.Job:
        """Submits a corpus job (or re-attaches to the same one: job ids are content-addressed) and
        follows it to its end; ``on_update`` sees every state change. Returns the final state."""
        final = self.submit_job(input_uri, output_uri, config)
        for update in self.watch_job(final.job_id, timeout=timeout):
            final = update.job
            if on_update:
                on_update(final)
        return final
