"""GRPO math, apart from the loop that feeds it (as in verl/OpenRLHF).

- advantages: rewards normalised within each group of completions of one prompt
  (OpenRLHF's ``group_norm``): A = (r - mean_group) / (std_group + eps);
- policy loss: PPO's clipped surrogate on the per-token ratio exp(logp - logp_old);
- KL to the frozen reference: the k3 estimator exp(ref - logp) - (ref - logp) - 1 (non-negative,
  unbiased), added to the loss with coefficient beta;
- entropy bonus (optional, OpenRLHF's ``entropy_coef``): minus coef x the token's entropy;
- aggregation: token-mean over every completion token of the batch, as OpenRLHF's default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6, estimator: str = "group_norm") -> torch.Tensor:
    """rewards (groups, G) -> advantages (groups, G). A group whose rewards are all equal has no
    signal and gets zero advantage. ``group_norm`` divides by the group's std (GRPO); ``dr_grpo``
    does not (Dr. GRPO), so a group whose rewards barely differ barely moves the policy."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if estimator == "dr_grpo":
        return centred
    if estimator != "group_norm":
        raise ValueError(f"unknown advantage estimator {estimator!r} (group_norm, dr_grpo)")
    return centred / (rewards.std(dim=1, keepdim=True, unbiased=False) + eps)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    log_ratio = (ref_logp - logp).clamp(-20, 20)
    return log_ratio.exp() - log_ratio - 1


@dataclass
class LossOutput:
    loss: torch.Tensor
    policy_loss: float
    kl: float
    clip_fraction: float


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_clip: float = 0.2,
    init_kl_coef: float = 0.0,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
) -> LossOutput:
    """All tensors are (N, T) per token; advantages are (N,) per sequence or (N, T) per token.
    ``entropy`` (per token, differentiable) with ``entropy_coef`` > 0 adds an entropy bonus."""
    adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
    ratio = torch.exp((logp - old_logp).clamp(-20, 20))
    surr1 = ratio * adv
    surr2 = ratio.clamp(1 - eps_clip, 1 + eps_clip) * adv
    per_token = -torch.min(surr1, surr2)
    kl = k3_kl(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
    per_token = per_token + init_kl_coef * kl
    if entropy is not None and entropy_coef > 0:
        per_token = per_token - entropy_coef * entropy
    denom = mask.sum().clamp(min=1)
    loss = (per_token * mask).sum() / denom
    with torch.no_grad():
        clipped = ((ratio - 1).abs() > eps_clip).float()
        return LossOutput(
            loss=loss,
            policy_loss=float(((-torch.min(surr1, surr2)) * mask).sum() / denom),
            kl=float((kl * mask).sum() / denom),
            clip_fraction=float((clipped * mask).sum() / denom),
        )
