"""The tiny Qwen2.5-VL honours its spec's vision patch size in both the model and the processor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mvp.model.policy import Policy
from mvp.model.tiny import TINY, ensure_tiny_model

pytestmark = pytest.mark.unit


def test_patch_size_28_gives_one_visual_token_per_frame(tmp_path):
    spec = {**TINY, "patch_size": 28, "image_pixels": 56 * 56}
    policy = Policy(ensure_tiny_model(tmp_path / "m", spec=spec))
    assert policy.model.config.vision_config.patch_size == 28
    frames = [Image.fromarray(np.full((180, 320, 3), v, np.uint8)) for v in (10, 200)]
    enc = policy.encode("Frame 1: <image>\nCandidate 1: <image>", frames)
    assert int((enc.input_ids == policy.image_token_id).sum()) == 2  # one merged token per frame
    assert enc.image_grid_thw.tolist() == [[1, 2, 2], [1, 2, 2]]
    completion = policy.tokenizer("<answer>1</answer>", add_special_tokens=False, return_tensors="pt")["input_ids"]
    logp, _ = policy.token_logprobs(enc, completion)
    assert logp.shape == completion.shape and torch.isfinite(logp).all()


def _policy_and_prompt(tmp_path):
    policy = Policy(ensure_tiny_model(tmp_path / "m"))
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)) for _ in range(3)]
    enc = policy.encode("Context: <image> <image>\nCandidate 1: <image>\nAnswer:", frames)
    return policy, enc


def test_shared_prompt_logprobs_equal_full_sequences_with_mrope(tmp_path):
    """The group's prompt runs once (KV cache repeated); log-probs and their gradient equal running
    each member's full sequence with the M-RoPE positions transformers computes itself."""
    policy, enc = _policy_and_prompt(tmp_path)
    torch.manual_seed(0)
    completions = torch.randint(0, 200, (3, 5))
    model = policy.model
    logp, _ = policy.token_logprobs(enc, completions)
    logp.sum().backward()
    shared_grad = model.lm_head.weight.grad.clone()
    model.zero_grad()

    ids = torch.cat([enc.input_ids.unsqueeze(0).repeat(3, 1), completions], dim=1)
    logits = model(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        mm_token_type_ids=policy.token_types(ids),
        pixel_values=enc.pixel_values.repeat(3, 1),
        image_grid_thw=enc.image_grid_thw.repeat(3, 1),
    ).logits[:, len(enc.input_ids) - 1 : -1]
    full = torch.log_softmax(logits.float(), -1).gather(-1, completions.unsqueeze(-1)).squeeze(-1)
    full.sum().backward()
    assert torch.allclose(logp, full, atol=1e-4)
    assert torch.allclose(shared_grad, model.lm_head.weight.grad, atol=1e-4)
    policy.share_prompt = False  # the benchmark's reference: every member runs its own prompt
    unshared, _ = policy.token_logprobs(enc, completions)
    assert torch.allclose(unshared, full, atol=1e-4)
    # M-RoPE really is in use: an image's tokens span fewer positions than they number
    assert int((enc.input_ids == policy.image_token_id).sum()) > 3
    assert enc.next_position < len(enc.input_ids)


def test_cached_greedy_sampling_equals_generate(tmp_path):
    policy, enc = _policy_and_prompt(tmp_path)
    ours = policy.sample(enc, 2, 8, 1.0, greedy=True)
    ids = enc.input_ids.unsqueeze(0).repeat(2, 1)
    theirs = policy.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        mm_token_type_ids=policy.token_types(ids),
        pixel_values=enc.pixel_values.repeat(2, 1),
        image_grid_thw=enc.image_grid_thw.repeat(2, 1),
        max_new_tokens=8,
        do_sample=False,
        eos_token_id=policy.eos_id,
        pad_token_id=policy.pad_id,
        suppress_tokens=policy.suppress_ids,
    )[:, len(enc.input_ids) :]
    assert ours.tolist() == theirs[:, : ours.shape[1]].tolist()


def _permuted(enc, order):
    """``enc`` with its last images (the candidates) in ``order``: what a permutation-balanced member sees."""
    from mvp.model.policy import Encoded

    size = int(enc.image_grid_thw[0].prod())
    blocks = list(enc.pixel_values.split(size))
    n_context = len(blocks) - len(order)
    rows = blocks[:n_context] + [blocks[n_context + i] for i in order]
    return Encoded(enc.input_ids, torch.cat(rows), enc.image_grid_thw, enc.positions)


def test_member_prompts_share_the_context_and_equal_their_own_forward(tmp_path):
    """A permutation-balanced group: each member sees the candidates in another order. The shared
    context runs once, each member's candidates once; log-probs and gradients equal running each
    member's prompt on its own; temperature scales the logits the update scores."""
    policy = Policy(ensure_tiny_model(tmp_path / "m"))
    rng = np.random.default_rng(1)
    frames = [Image.fromarray(rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)) for _ in range(5)]
    enc = policy.encode("Context: <image> <image>\nCandidates: 1 <image> 2 <image> 3 <image>\nAnswer:", frames)
    members = [_permuted(enc, order) for order in ([0, 1, 2], [1, 2, 0], [2, 0, 1])]
    torch.manual_seed(0)
    completions = torch.randint(0, 200, (3, 4))
    grouped, _ = policy.token_logprobs(members, completions, temperature=0.7)
    grouped.sum().backward()
    grad = policy.model.lm_head.weight.grad.clone()
    policy.model.zero_grad()
    alone = torch.cat(
        [policy.token_logprobs(m, completions[i : i + 1], temperature=0.7)[0] for i, m in enumerate(members)]
    )
    alone.sum().backward()
    assert torch.allclose(grouped, alone, atol=1e-4)
    assert torch.allclose(grad, policy.model.lm_head.weight.grad, atol=1e-4)
    assert not torch.allclose(grouped[0], grouped[1], atol=1e-3), "the members' candidates differ"
    at_one, _ = policy.token_logprobs(members, completions)
    assert not torch.allclose(at_one, grouped, atol=1e-3)
    # members given one Encoded object (fewer orders than members) share its rows: the same values as
    # each member running its own copy
    runs = [members[0], members[0], members[1], members[1]]
    copies = [_permuted(enc, order) for order in ([0, 1, 2], [0, 1, 2], [1, 2, 0], [1, 2, 0])]
    completions = torch.randint(0, 200, (4, 4))
    shared, _ = policy.token_logprobs(runs, completions, temperature=0.7)
    separate, _ = policy.token_logprobs(copies, completions, temperature=0.7)
    assert torch.allclose(shared, separate, atol=1e-4)


def test_sampled_logprobs_are_the_sampling_distribution(tmp_path):
    """The behaviour log-probs a rollout records equal what the update computes at the same
    temperature (the update's old log-probs), and differ from the untempered ones."""
    policy, enc = _policy_and_prompt(tmp_path)
    torch.manual_seed(3)
    with torch.no_grad():
        completions, behaviour = policy.sample(enc, 4, 6, 0.7, return_logprobs=True)
        scored, _ = policy.token_logprobs(enc, completions, temperature=0.7)
        untempered, _ = policy.token_logprobs(enc, completions)
    mask = policy.completion_mask(completions)
    assert torch.allclose(behaviour * mask, scored * mask, atol=1e-4)
    assert float(((untempered - scored).abs() * mask).sum() / mask.sum()) > 1e-3


def test_groups_decoded_together_equal_each_group_alone(tmp_path):
    """``sample_groups`` decodes several groups as one batch when their prompts have one length: the
    greedy completions equal each group sampled on its own (up to the padding columns a shorter group
    carries), its behaviour log-probs are the update's, and a bf16 prefill stays within bf16
    rounding of them; prompts of different lengths fall back to one decode per group."""
    policy = Policy(ensure_tiny_model(tmp_path / "m"))
    rng = np.random.default_rng(2)
    frames = [Image.fromarray(rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)) for _ in range(5)]
    text = "Context: <image> <image>\nCandidates: 1 <image> 2 <image> 3 <image>\nAnswer:"
    enc_a = policy.encode(text, frames)
    enc_b = policy.encode(text, frames[::-1])
    members = [_permuted(enc_a, order) for order in ([0, 1, 2], [0, 1, 2], [2, 0, 1], [2, 0, 1])]
    groups = [members, enc_b]
    together = policy.sample_groups(groups, 4, 6, 1.0, greedy=True)
    for enc, (out, logps) in zip(groups, together, strict=True):
        alone = policy.sample(enc, 4, 6, 1.0, greedy=True)
        assert out[:, : alone.shape[1]].tolist() == alone.tolist()
        assert (out[:, alone.shape[1] :] == policy.pad_id).all()
        scored, _ = policy.token_logprobs(enc, out)
        mask = policy.completion_mask(out)
        assert torch.allclose(logps * mask, scored * mask, atol=1e-4)
    torch.manual_seed(0)
    fast = policy.sample_groups(groups, 4, 6, 1.0, bf16_prefill=True)
    for enc, (out, logps) in zip(groups, fast, strict=True):
        scored, _ = policy.token_logprobs(enc, out)
        mask = policy.completion_mask(out)
        assert logps.dtype == torch.float32
        assert float(((logps - scored).abs() * mask).max()) < 0.1
    shorter = policy.encode("Context: <image> <image>\nCandidates: 1 <image> 2 <image> 3 <image>", frames)
    mixed = policy.sample_groups([enc_a, shorter], 2, 6, 1.0, greedy=True)
    assert mixed[1][0].tolist() == policy.sample(shorter, 2, 6, 1.0, greedy=True).tolist()
