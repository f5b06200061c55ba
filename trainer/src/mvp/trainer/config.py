"""The GRPO algorithm's settings, declared once: the local loop (``LocalTrainConfig`` extends it)
and the OpenRLHF launcher (a recipe's ``grpo:`` section) read the same fields with the same
defaults. Field names are OpenRLHF's leaf flag names; ``OPENRLHF_FLAGS`` maps each field to the
train_ppo_ray flag it sets."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class GrpoConfig(BaseModel):
    """GRPO: group-normalised advantages, PPO's clipped ratio, k3 KL to the reference as a loss."""

    model_config = ConfigDict(extra="forbid")

    n_samples_per_prompt: int = Field(8, ge=2, description="Completions per prompt (the GRPO group).")
    init_kl_coef: float = Field(1e-3, ge=0, description="Coefficient of the k3 KL to the reference (a loss term).")
    eps_clip: float = Field(0.2, gt=0, description="PPO ratio clip.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of rollouts.")
    max_new_tokens: int = Field(
        16, ge=4, description="Generation budget per completion (an MVP answer is ~13 tokens; raise it for <think>)."
    )
    entropy_coef: float = Field(
        0.0,
        ge=0,
        description="Entropy bonus per completion token (loss -= coef * entropy), against the policy collapsing "
        "onto one answer per prompt; when > 0 every group trains, also those whose rewards are all equal.",
    )
    advantage_estimator: Literal["group_norm", "dr_grpo"] = Field(
        "group_norm",
        description="group_norm (GRPO): (r - group mean) / group std; dr_grpo (Dr. GRPO): r - group mean, not "
        "divided by the std, so near-identical rewards in a group give near-zero advantages instead of unit ones "
        "(raise lr accordingly: the advantages are about 1/std times smaller).",
    )


OPENRLHF_FLAGS = {
    "n_samples_per_prompt": "--rollout.n_samples_per_prompt",
    "init_kl_coef": "--algo.kl.init_coef",
    "eps_clip": "--actor.eps_clip",
    "temperature": "--rollout.temperature",
    "max_new_tokens": "--rollout.max_new_tokens",
    "advantage_estimator": "--algo.advantage.estimator",
    "entropy_coef": "--actor.entropy_coef",
}
