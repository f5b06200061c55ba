"""The GRPO algorithm's settings, declared once: the local loop (``LocalTrainConfig`` extends it)
and the OpenRLHF launcher (a recipe's ``grpo:`` section) read the same fields with the same
defaults. Field names are OpenRLHF's leaf flag names; ``OPENRLHF_FLAGS`` maps each field to the
train_ppo_ray flag it sets."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class LocalTrainConfig(GrpoConfig):
    """The local GRPO recipe. Defaults are for mvp-smol (pretrained, aligned: it already writes the
    answer format) on a 2-core CPU; the tiny random-init fixture needs a high learning rate and the
    format warm-up (the tests pass ``--lr 3e-4 --sft-steps N``)."""

    steps: int = Field(60, ge=0, description="GRPO steps (each: prompts_per_step groups).")
    prompts_per_step: int = Field(4, ge=1, description="Prompts (groups) per step.")
    lr: float = Field(1e-5, gt=0, description="AdamW learning rate (full fine-tuning of mvp-smol; tiny: 3e-4).")
    lr_scheduler: Literal["constant", "cosine_with_min_lr"] = Field(
        "constant",
        description="constant, or OpenRLHF's cosine_with_min_lr: lr decays along a half cosine over `steps` to "
        "min_lr_ratio x lr (a run cut short by time_budget_s stops part-way down the curve).",
    )
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final lr / lr of cosine_with_min_lr.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    ppo_epochs: int = Field(1, ge=1, description="Update passes over each batch of rollouts.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping.")
    sft_steps: int = Field(
        0, ge=0, description="Format warm-up steps on random well-formed answers (0: none; the tiny model needs ~60)."
    )
    sft_lr: float = Field(1e-3, gt=0, description="Learning rate of the format warm-up.")
    seed: int = Field(0, ge=0, description="Seed of data order, sampling and initialisation.")
    save_steps: int = Field(20, ge=1, description="Steps between checkpoints.")
    max_ckpt_num: int = Field(
        3,
        ge=0,
        description="Checkpoints kept (OpenRLHF's --ckpt.max_num): once latest.json names a new one, step "
        "folders older than the newest max_ckpt_num are deleted. 0 keeps every checkpoint.",
    )
    eval_steps: int = Field(0, ge=0, description="Steps between held-out evaluations (0: only at the end).")
    time_budget_s: float = Field(
        0.0, ge=0, description="Stop GRPO after this many seconds of training even before `steps` (0: no limit)."
    )
    train_vision: bool = Field(
        False, description="Also train the vision tower's ViT blocks (the vision merger always trains)."
    )
    train_embeddings: bool = Field(
        False, description="Also train the token embeddings (tied to the output head in mvp-smol)."
    )
    bf16_update: bool = Field(
        False,
        description="Run the update's forward and backward under bf16 autocast (weights, optimiser state and "
        "log-probabilities stay fp32).",
    )
    bf16_prefill: bool = Field(
        False,
        description="Run the rollouts' prompt forward under bf16 autocast; its KV cache is cast back to fp32 and "
        "token-by-token decoding stays fp32 (on CPU, autocast's per-call weight casts make bf16 decoding slower).",
    )
    control_random_labels: bool = Field(
        False,
        description="Control run: remove the MVP signal and keep the format signal. Plain groups are scored "
        "against a random answer (a seeded random pick of the candidates); balanced groups score each member "
        "against another member's label (the labels shuffled within the group: same answer positions, "
        "unrelated to the frames that member saw).",
    )
    balanced_groups: bool = Field(
        False,
        description="Permutation-balanced groups: each completion of a group sees the sample with its candidates "
        "in another order (the label remapped; the first masked frame on each position in turn), so answering "
        "by candidate number earns chance on average and only answers that follow the frames carry advantage. "
        "The context before the candidates is computed once per group.",
    )
    orders_per_group: int | None = Field(
        None,
        ge=2,
        description="Distinct candidate orders in a balanced group (None: one per member). Members share an "
        "order in equal runs (n_samples_per_prompt / orders_per_group each) and each order's prompt runs once "
        "for them, in generation and in the update: fewer orders, cheaper steps; the balance over positions "
        "stays (each order puts the first masked frame on another position).",
    )

    @model_validator(mode="after")
    def _orders_divide_the_group(self) -> LocalTrainConfig:
        if self.orders_per_group is not None:
            if not self.balanced_groups:
                raise ValueError("orders_per_group needs balanced_groups")
            if self.n_samples_per_prompt % self.orders_per_group:
                raise ValueError(
                    f"orders_per_group {self.orders_per_group} must divide n_samples_per_prompt "
                    f"{self.n_samples_per_prompt}"
                )
        return self
