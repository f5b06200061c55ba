"""GRPO math: group-normalised advantages, k3 KL, the clipped surrogate and its gradient."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mvp.trainer.grpo import group_advantages, grpo_loss, k3_kl
from mvp.trainer.local import LocalTrainConfig, batch_indices, lr_at

pytestmark = pytest.mark.unit


def test_group_advantages_are_normalised_per_group() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.5, 0.5], [0.2, 0.2, 0.2, 0.2]])
    adv = group_advantages(rewards)
    assert torch.allclose(adv[0].mean(), torch.tensor(0.0), atol=1e-6)
    assert torch.allclose(adv[0].std(unbiased=False), torch.tensor(1.0), atol=1e-4)
    assert torch.all(adv[1] == 0), "a group with equal rewards carries no signal"
    assert adv[0, 0] > adv[0, 2] > adv[0, 1]


def test_dr_grpo_advantages_are_centred_but_keep_the_reward_scale() -> None:
    rewards = torch.tensor([[0.26, 0.25, 0.25, 0.25], [1.0, 0.0, 1.0, 0.0]])
    norm, dr = group_advantages(rewards), group_advantages(rewards, estimator="dr_grpo")
    assert torch.allclose(dr.mean(dim=1), torch.zeros(2), atol=1e-6)
    # a 0.01 difference is a full unit of advantage under group_norm, 0.0075 under dr_grpo
    assert norm[0, 0] > 1.5 and abs(float(dr[0, 0]) - 0.0075) < 1e-6
    assert torch.allclose(dr[1], torch.tensor([0.5, -0.5, 0.5, -0.5]))
    with pytest.raises(ValueError, match="unknown advantage estimator"):
        group_advantages(rewards, estimator="gae")


def test_entropy_bonus_pushes_towards_a_flatter_policy() -> None:
    logits = torch.tensor([[4.0, 0.0, 0.0]], requires_grad=True)  # one token, three choices, peaked
    logp_all = torch.log_softmax(logits, -1)
    entropy = -(logp_all.exp() * logp_all).sum(-1, keepdim=True)
    logp = logp_all[:, :1]
    mask = torch.ones(1, 1)
    zero = torch.zeros(1)
    out = grpo_loss(logp, logp.detach(), None, zero, mask, entropy=entropy, entropy_coef=0.1)
    out.loss.backward()
    assert logits.grad[0, 0] > 0 > logits.grad[0, 1]  # descent lowers the top logit, raises the others
    assert grpo_loss(logp, logp.detach(), None, zero, mask, entropy=entropy).loss.item() == 0.0


def test_per_token_advantages_move_each_token_their_own_way() -> None:
    logits = torch.zeros(1, 3, 5, requires_grad=True)
    tokens = torch.tensor([[1, 2, 3]])
    logp = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    out = grpo_loss(logp, logp.detach(), None, torch.tensor([[0.0, 1.0, -1.0]]), torch.ones(1, 3))
    out.loss.backward()
    assert torch.all(logits.grad[0, 0] == 0), "zero advantage, no push"
    assert logits.grad[0, 1, 2] < 0 < logits.grad[0, 2, 3], "descent raises token 1's pick, lowers token 2's"


@settings(max_examples=100)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=16), st.lists(st.floats(-5, 5), min_size=1, max_size=16))
def test_k3_kl_is_non_negative_and_zero_at_equality(a: list[float], b: list[float]) -> None:
    n = min(len(a), len(b))
    logp, ref = torch.tensor(a[:n]), torch.tensor(b[:n])
    assert torch.all(k3_kl(logp, ref) >= -1e-6)
    assert torch.allclose(k3_kl(logp, logp), torch.zeros(n), atol=1e-6)


def test_positive_advantage_raises_the_sampled_tokens_probability() -> None:
    logits = torch.zeros(2, 3, 5, requires_grad=True)
    tokens = torch.tensor([[1, 2, 3], [4, 0, 1]])
    logp = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    out = grpo_loss(logp, logp.detach(), None, torch.tensor([1.0, -1.0]), mask)
    out.loss.backward()
    grad = logits.grad
    assert grad[0, 0, 1] < 0 and grad[1, 0, 4] > 0  # descent raises seq 0's tokens, lowers seq 1's
    assert torch.all(grad[0, 2] == 0), "masked tokens get no gradient"
    assert out.clip_fraction == 0.0


def test_ratio_is_clipped() -> None:
    logp = torch.zeros(1, 2)
    old = torch.full((1, 2), -1.0)  # ratio e ~ 2.7, far outside 1 +- 0.2
    out = grpo_loss(logp, old, None, torch.tensor([1.0]), torch.ones(1, 2), eps_clip=0.2)
    assert out.clip_fraction == 1.0
    assert abs(out.policy_loss + 1.2) < 1e-5  # -min(ratio*A, 1.2*A)


def test_data_order_is_a_pure_function_of_seed_and_step() -> None:
    n, per = 10, 3
    first = [batch_indices(n, per, s, seed=4) for s in range(9)]
    assert first == [batch_indices(n, per, s, seed=4) for s in range(9)]
    assert sorted(i for b in first[:3] for i in b) == sorted(set(i for b in first[:3] for i in b))
    assert first != [batch_indices(n, per, s, seed=5) for s in range(9)]


def test_cosine_lr_decays_from_lr_to_its_floor_over_the_run() -> None:
    constant = LocalTrainConfig(lr=2e-5, steps=10)
    assert {lr_at(constant, s) for s in range(12)} == {2e-5}
    cosine = LocalTrainConfig(lr=2e-5, steps=10, lr_scheduler="cosine_with_min_lr", min_lr_ratio=0.1)
    lrs = [lr_at(cosine, s) for s in range(13)]
    assert lrs[0] == pytest.approx(2e-5) and lrs[5] == pytest.approx(1.1e-5)
    assert lrs[10:] == pytest.approx([2e-6] * 3)
    assert all(a > b for a, b in itertools.pairwise(lrs[:11]))
