"""The local GRPO update against real rollouts (tiny Qwen2.5-VL, a real corpus job, a real
reward-service): the update scores the rollouts' own distribution (temperature), later PPO epochs see
a ratio that moves and clips, and permutation-balanced groups show each member its own candidate
order with its own label, so answering by number earns chance."""

from __future__ import annotations

import json
import random

import pytest

from mvp.clients import RewardClient
from mvp.common.storage import Storage
from mvp.trainer.data import Example, balanced_orders, permuted_label
from tests.media import procedural_examples
from tests.procs import Proc


def _example(answer: list[int], candidates: int = 8) -> Example:
    label = {
        "answer": answer,
        "num_candidates": candidates,
        "index_base": 1,
        "candidate_times_s": list(range(candidates)),
    }
    return Example("x", "", json.dumps(label), answer, candidates, 1, [None] * (3 + candidates))


@pytest.mark.unit
@pytest.mark.parametrize("answer", [[3], [8, 2]])
def test_balanced_orders_put_the_first_masked_frame_on_every_position(answer: list[int]) -> None:
    ex = _example(answer)
    orders = balanced_orders(ex, 8, random.Random(0))
    labels = [json.loads(permuted_label(ex, o)) for o in orders]
    assert sorted(label["answer"][0] for label in labels) == list(range(1, 9))
    for order, label in zip(orders, labels, strict=True):
        assert sorted(order) == list(range(8))
        # each answer index shows the same frame as before (times follow their frames)
        assert [label["candidate_times_s"][a - 1] for a in label["answer"]] == [float(a - 1) for a in answer]
    # a policy that always answers one number is right for exactly one member in eight
    for number in range(1, 9):
        assert sum(label["answer"][0] == number for label in labels) == 1


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> list:
    return procedural_examples(tmp_path_factory.mktemp("grpo-update"), seed=4300)


def _trainer(examples, reward_server: Proc, **fields):
    from mvp.model.policy import Policy
    from mvp.model.tiny import ensure_tiny_model
    from mvp.trainer.local import LocalTrainConfig, LocalTrainer

    client = RewardClient(f"127.0.0.1:{reward_server.ports['grpc']}")
    config = LocalTrainConfig(prompts_per_step=2, n_samples_per_prompt=4, max_new_tokens=8, **fields)
    return LocalTrainer(Policy(ensure_tiny_model()), examples, client.score, config, Storage(), "/nonexistent")


@pytest.mark.integration
def test_update_scores_the_rollouts_temperature(examples, reward_server: Proc) -> None:
    """At T=0.7 the update's log-probs of the sampled tokens equal the sampler's (an untempered update
    was ~0.1 nats a token off)."""
    trainer = _trainer(examples, reward_server, temperature=0.7, lr=1e-4, entropy_coef=0.01)
    log = trainer.grpo_step()
    assert log.values["logprob_gap"] < 1e-3, log.values


@pytest.mark.integration
def test_later_ppo_epochs_keep_the_first_epochs_old_logprobs(examples, reward_server: Proc) -> None:
    """With ppo_epochs > 1 the ratio to the rollout's log-probs moves after the first optimiser step and
    clipping acts (recomputing "old" each epoch made the ratio 1 and clip_fraction 0 at every step)."""
    trainer = _trainer(examples, reward_server, ppo_epochs=4, lr=3e-2, entropy_coef=0.01, eps_clip=0.05)
    fractions = [trainer.grpo_step().values["clip_fraction"] for _ in range(2)]
    assert max(fractions) > 0, fractions


@pytest.mark.integration
def test_balanced_groups_score_each_member_against_its_own_order(examples, reward_server: Proc) -> None:
    trainer = _trainer(examples, reward_server, balanced_groups=True, lr=1e-4, entropy_coef=0.01)
    ex = examples[0]
    group = trainer.rollout([ex])[0]
    assert isinstance(group.enc, list) and len(group.enc) == 4
    answers = [json.loads(label)["answer"] for label in group.labels]
    assert sorted(a[0] for a in answers) == list(range(1, ex.num_candidates + 1))
    # the members see one text and the same context frames, their candidates in their own order
    assert all(e.input_ids.equal(group.enc[0].input_ids) for e in group.enc)
    assert len({tuple(e.pixel_values[-1].tolist()) for e in group.enc}) > 1
    log = trainer.grpo_step()
    assert log.values["logprob_gap"] < 1e-3
    # the control scores every member against another member's label
    control = _trainer(examples, reward_server, balanced_groups=True, control_random_labels=True)
    groups = control.rollout(examples[:2])
    for g, shuffled in zip(groups, [control.labels(groups)[i * 4 : (i + 1) * 4] for i in range(2)], strict=True):
        assert sorted(shuffled) == sorted(g.labels) and all(a != b for a, b in zip(shuffled, g.labels, strict=True))


@pytest.mark.unit
def test_orders_per_group_must_divide_a_balanced_group() -> None:
    from pydantic import ValidationError

    from mvp.trainer.config import LocalTrainConfig

    assert LocalTrainConfig(balanced_groups=True, n_samples_per_prompt=8, orders_per_group=4).orders_per_group == 4
    with pytest.raises(ValidationError, match="must divide"):
        LocalTrainConfig(balanced_groups=True, n_samples_per_prompt=8, orders_per_group=3)
    with pytest.raises(ValidationError, match="needs balanced_groups"):
        LocalTrainConfig(n_samples_per_prompt=8, orders_per_group=4)


@pytest.mark.integration
def test_fewer_orders_than_members_share_each_orders_prompt(examples, reward_server: Proc) -> None:
    """orders_per_group 2 in a group of 4: two orders, each shown to a run of two members as one prompt
    (one Encoded object, so it runs once), the first masked frame on two positions; the control never
    scores a member against its own order's label."""
    trainer = _trainer(examples, reward_server, balanced_groups=True, orders_per_group=2, lr=1e-4)
    group = trainer.rollout(examples[:1])[0]
    assert group.enc[0] is group.enc[1] and group.enc[2] is group.enc[3] and group.enc[0] is not group.enc[2]
    assert group.labels[0] == group.labels[1] and group.labels[2] == group.labels[3]
    assert json.loads(group.labels[0])["answer"] != json.loads(group.labels[2])["answer"]
    assert trainer.grpo_step().values["logprob_gap"] < 1e-3
    control = _trainer(examples, reward_server, balanced_groups=True, orders_per_group=2, control_random_labels=True)
    for _ in range(3):
        groups = control.rollout(examples[:2])
        shuffled = control.labels(groups)
        own = [label for g in groups for label in g.labels]
        assert all(a != b for a, b in zip(shuffled, own, strict=True))
        control.step += 1


@pytest.mark.unit
def test_fast_bf16_follows_the_device_kernels() -> None:
    """bf16 autocast is chosen only where it is faster: on this CPU what PyTorch's oneDNN says."""
    import torch

    from mvp.trainer.precision import fast_bf16

    assert fast_bf16("cpu") is bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert fast_bf16("meta") is False
