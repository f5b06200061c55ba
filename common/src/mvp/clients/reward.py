"""Client of ``mvp.v1.RewardService``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import grpc

from mvp.clients.channel import BaseClient, ClientConfig
from mvp.v1 import reward_pb2, reward_pb2_grpc, sample_pb2


class RewardClient(BaseClient):
    """Scores completions through a running reward-service.

    >>> with RewardClient("127.0.0.1:50052") as rc:
    ...     results = rc.score(["<answer>2, 1</answer>"], ['{"answer": [2, 1], "num_candidates": 4}'])
    """

    ENV_PREFIX = "MVP_REWARD"

    def __init__(self, config: ClientConfig | str, *, chunk_size: int = 1024) -> None:
        super().__init__(config)
        self.stub = reward_pb2_grpc.RewardServiceStub(self.channel)
        self.chunk_size = chunk_size

    def score(
        self,
        completions: Sequence[str],
        labels: Sequence[str | sample_pb2.Label],
        config: reward_pb2.RewardConfig | None = None,
        include_slots: bool = False,
    ) -> list[reward_pb2.RewardResult]:
        """Scores ``completions[i]`` against ``labels[i]`` (a JSON label string or a Label message);
        ``include_slots`` also returns each answered index's own credit (``RewardResult.slots``).

        Batches larger than ``chunk_size`` are split into several calls; results keep input order.
        Raises ``grpc.RpcError`` (INVALID_ARGUMENT) for an invalid label and
        ``ServiceUnavailableError`` when the service cannot be reached."""
        if len(completions) != len(labels):
            raise ValueError(f"{len(completions)} completions but {len(labels)} labels")
        results: list[reward_pb2.RewardResult] = []
        for start in range(0, len(completions), self.chunk_size):
            items = [
                _item(c, lab)
                for c, lab in zip(
                    completions[start : start + self.chunk_size], labels[start : start + self.chunk_size], strict=True
                )
            ]
            request = reward_pb2.ScoreRequest(items=items, config=config, include_slots=include_slots)
            try:
                response = self.stub.Score(
                    request,
                    timeout=self.config.timeout_s,
                    metadata=self.metadata,
                    wait_for_ready=self.config.wait_for_ready,
                )
            except grpc.RpcError as exc:
                raise self._unavailable(exc) from exc
            results.extend(response.results)
        return results

    def score_stream(
        self, requests: Iterable[reward_pb2.ScoreStreamRequest]
    ) -> Iterator[reward_pb2.ScoreStreamResponse]:
        """Streams completions as they are produced; yields each result as it is scored."""
        try:
            yield from self.stub.ScoreStream(
                requests, metadata=self.metadata, wait_for_ready=self.config.wait_for_ready
            )
        except grpc.RpcError as exc:
            raise self._unavailable(exc) from exc


def _item(completion: str, label: str | sample_pb2.Label) -> reward_pb2.ScoreItem:
    if isinstance(label, str):
        return reward_pb2.ScoreItem(completion=completion, label_json=label)
    return reward_pb2.ScoreItem(completion=completion, label=label)
