"""Settings of `mvp reward serve` (environment prefix ``MVP_REWARD_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from mvp.common.settings import GrpcServerSettings


class RewardServerSettings(GrpcServerSettings):
    model_config = SettingsConfigDict(env_prefix="MVP_REWARD_", extra="ignore")

    port: int = Field(50052, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int | None = Field(
        9092, ge=0, le=65535, description="Prometheus /metrics port (0 picks a free one; unset disables)."
    )
    http_port: int | None = Field(
        8092,
        ge=0,
        le=65535,
        description="Port of the OpenRLHF remote-reward HTTP endpoint (POST /score; 0 picks a free "
        "one; unset disables).",
    )
    max_batch: int = Field(
        4096, ge=1, description="Most completions in one Score call or HTTP request; more is rejected."
    )
    format_weight: float = Field(0.1, ge=0, le=1, description="Default reward weight of format.")
    selection_weight: float = Field(0.3, ge=0, le=1, description="Default reward weight of selection.")
    ordering_weight: float = Field(0.3, ge=0, le=1, description="Default reward weight of ordering.")
    exact_weight: float = Field(0.3, ge=0, le=1, description="Default reward weight of the exact match.")
    soft: bool = Field(False, description="Enable the soft (gap-adjacent distractor) credit by default.")
    soft_tau_s: float = Field(2.0, gt=0, description="Decay time constant of the soft credit, seconds.")
    soft_max_credit: float = Field(0.5, ge=0, le=1, description="Largest soft credit per distractor.")
