"""Typed Python clients of the MVP-Train gRPC services, used by the CLI, the trainer, the tests
and users alike. Each holds one channel (connection reuse), applies deadlines, and retries
UNAVAILABLE with exponential backoff through gRPC's own retry policy."""

from mvp.clients.channel import ClientConfig, ServiceUnavailableError, make_channel
from mvp.clients.reward import RewardClient
from mvp.clients.synth import SynthClient

__all__ = ["ClientConfig", "RewardClient", "ServiceUnavailableError", "SynthClient", "make_channel"]
