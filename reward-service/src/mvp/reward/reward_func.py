"""OpenRLHF custom reward function that scores through a running MVP reward-service over gRPC.

Use: ``--reward.remote_url $(mvp reward reward-func-path)`` (OpenRLHF 0.11; ``--remote_rm_url``
before). OpenRLHF loads this file by path and calls ``reward_func(queries, prompts, labels)`` from
worker threads. Configure with environment variables on the Ray workers:

- ``MVP_REWARD_ADDR``: host:port of the reward-service (default ``mvp.common.settings.REWARD_ADDR``)
- ``MVP_REWARD_TOKEN``: bearer token, if the service requires one
- ``MVP_REWARD_TLS_CA``: PEM CA file, to connect with TLS
- ``MVP_REWARD_TIMEOUT_S``: deadline per call (default 30)

It needs ``mvp-common`` (the client) and torch, both present in an OpenRLHF worker image.
"""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_client = None


def _get_client():
    """One shared client (one channel) per worker process: connection reuse across calls."""
    global _client
    with _lock:
        if _client is None:
            from mvp.clients import RewardClient
            from mvp.common.settings import REWARD_ADDR

            # MVP_REWARD_TOKEN and MVP_REWARD_TLS_CA are read by the client, as in every process
            target = os.environ.get("MVP_REWARD_ADDR", REWARD_ADDR)
            timeout_s = float(os.environ.get("MVP_REWARD_TIMEOUT_S", "30"))
            _client = RewardClient(RewardClient.env_config(target, timeout_s=timeout_s))
        return _client


def reward_func(queries: list[str], prompts: list[str], labels: list[str]) -> dict:
    """Returns ``{"rewards": tensor, "scores": tensor, "extra_logs": {name: tensor}}``.

    Raises ``mvp.clients.ServiceUnavailableError`` naming the address when the service is down,
    so the failure is visible in OpenRLHF's logs instead of silently zeroing rewards."""
    import torch

    from mvp.reward.openrlhf import COMPONENTS, openrlhf_payload, response_from_query

    responses = [response_from_query(q, p) for q, p in zip(queries, prompts, strict=True)]
    results = _get_client().score(responses, list(labels))
    payload = openrlhf_payload(
        [r.reward for r in results],
        [{name: getattr(r.components, name) for name in COMPONENTS} for r in results],
        [bool(r.failure_reason) for r in results],
    )
    rewards = torch.tensor(payload["rewards"], dtype=torch.float32)
    extra = {k: torch.tensor(v, dtype=torch.float32) for k, v in payload["extra_logs"].items()}
    return {"rewards": rewards, "scores": rewards, "extra_logs": extra}
