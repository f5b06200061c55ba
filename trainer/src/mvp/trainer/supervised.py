"""Supervised fine-tuning on MVP answers: cross-entropy on the answer tokens of training samples.

The learning proof's warm start (``benchmarks/learning_curve.py --warm-start-epochs``: a base that
reads the frames before GRPO starts, measured as its own "before", so the gain claimed is GRPO's
alone) and the label ceiling (``benchmarks/research/label_ceiling.py``). Trains the parameters GRPO
trains (``select_trainable``), under bf16 autocast where the device has bf16 kernels
(``precision.fast_bf16``)."""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from mvp.common.sample import format_answer
from mvp.model.policy import Encoded, Policy
from mvp.trainer.data import Example
from mvp.trainer.precision import fast_bf16


def supervised_epoch(
    policy: Policy,
    examples: list[Example],
    optimizer: torch.optim.Optimizer,
    trainable: list[torch.nn.Parameter],
    batch: int,
    encoded: Callable[[Example], Encoded],
    rng: random.Random,
    bf16: bool | None = None,
) -> float:
    """One pass over ``examples`` in a seeded order; returns the mean answer-token loss. ``bf16``:
    autocast the forward and backward (None: where it is faster, ``fast_bf16``)."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    total, count = 0.0, 0
    policy.model.train()
    device = torch.device(policy.device).type
    if bf16 is None:
        bf16 = fast_bf16(policy.device)
    for start in range(0, len(order), batch):
        optimizer.zero_grad()
        chunk = [examples[i] for i in order[start : start + batch]]
        for ex in chunk:
            target = format_answer(ex.answer) + "<|im_end|>"
            ids = policy.tokenizer(target, add_special_tokens=False, return_tensors="pt")["input_ids"]
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                logp, _ = policy.token_logprobs(encoded(ex), ids)
            loss = -logp.float().mean()
            (loss / len(chunk)).backward()
            total += loss.item()
            count += 1
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
    return total / max(1, count)
