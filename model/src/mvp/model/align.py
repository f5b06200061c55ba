"""Alignment of mvp-smol: teach the language model to read the distilled visual tokens, without
MVP answers and without gap questions.

The tasks (``mvp.model.tasks``) are frame matching (K reference frames, find each one's copy or
its one-second neighbour among shuffled candidates) and scene facts the generator labels (where a
named object is, which way it moved). Answers use the project's answer format, so the format of K
indices exists before GRPO without ever being an MVP answer. It is supervised (cross-entropy on the
answer tokens only), stage by stage along a curriculum.

Trained: the vision merger (the projector into the language model) and rank-r LoRA deltas on
the language model's projections named by ``lora_targets`` (q/v by default; the attention's k/o
and the MLP's gate/up/down can be added); decoder layers named by ``full_layers`` are trained in
full instead (no LoRA there). Saved as ``weights/align.safetensors`` (merger, LoRA A/B and any
full layers' weights, fp16) and merged into the Hugging Face folder by ``smol.assemble``.
"""

from __future__ import annotations

import json
import math
import random
import time
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from mvp.common.sample import format_answer, parse_answer, prompt_messages
from mvp.model import smol
from mvp.model.frames import pixel_rows, video_frames, video_objects
from mvp.model.policy import Encoded, Policy
from mvp.model.settings import LORA_TARGETS, AlignConfig
from mvp.model.tasks import FACT_KINDS, AlignSample, Objects, make_sample

TRAIN_VIDEOS_FROM = 200_000  # frame-seed ranges: disjoint from distillation and from each other
HELD_OUT_VIDEOS_FROM = 300_000


class FrameBank:
    """Procedural frames run through the image processor once: (pixel rows, grid) per frame, and
    the generator's scene objects per frame (the scene-fact labels)."""

    def __init__(self, processor, first: int, count: int) -> None:
        self.videos = list(range(first, first + count))
        self.pixels: dict[int, torch.Tensor] = {}
        for v in self.videos:
            self.pixels[v], grid = pixel_rows(processor, video_frames(v))
        self.grid = torch.tensor(grid)
        self.frames_per_video = len(self.pixels[self.videos[-1]])

    @cached_property
    def objects(self) -> Objects:
        """Computed on the first scene-fact sample; matching stages never need them."""
        return {v: video_objects(v, self.frames_per_video) for v in self.videos}

    def sample(self, rng: random.Random, k: int, n_distract: int, where: str) -> AlignSample:
        objects = self.objects if where in FACT_KINDS else None
        return make_sample(rng, self.videos, self.frames_per_video, k, n_distract, where, objects)

    def encode(self, policy: Policy, sample: AlignSample) -> Encoded:
        pixels = torch.cat([self.pixels[v][f] for v, f in sample.frames])
        grid = self.grid.repeat(len(sample.frames), 1)
        return policy.encode_pixels(prompt_messages(sample.prompt), pixels, grid)


class LoRA(torch.nn.Module):
    """y = W x + B A x: W frozen, A and B trained (B starts at 0, so training starts from W)."""

    def __init__(self, base: torch.nn.Linear, rank: int) -> None:
        super().__init__()
        self.base = base
        self.A = torch.nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.B = torch.nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.A.T) @ self.B.T


def add_lora(
    model, rank: int, targets: tuple[str, ...] = LORA_TARGETS, skip_layers: range = range(0)
) -> dict[str, LoRA]:
    """Wraps the language model's projections named in ``targets``, except in the decoder layers
    ``skip_layers`` (trained in full); returns {weight name: wrapper}."""
    wrapped = {}
    for name, module in list(model.model.language_model.named_modules()):
        parts = name.split(".")
        if len(parts) > 1 and parts[0] == "layers" and int(parts[1]) in skip_layers:
            continue
        for target in targets:
            child = getattr(module, target, None)
            if isinstance(child, torch.nn.Linear):
                lora = LoRA(child, rank)
                setattr(module, target, lora)
                wrapped[f"model.language_model.{name}.{target}.weight"] = lora
    return wrapped


def full_layer_params(model, layers: range) -> dict[str, torch.nn.Parameter]:
    """The parameters of the decoder layers ``layers`` by their names in the model, trainable."""
    count = len(model.model.language_model.layers)
    if layers and layers[-1] >= count:
        raise ValueError(f"full_layers {layers[0]}-{layers[-1]}: the language model has layers 0-{count - 1}")
    prefix = tuple(f"model.language_model.layers.{i}." for i in layers)
    params = {name: p for name, p in model.named_parameters() if prefix and name.startswith(prefix)}
    for p in params.values():
        p.requires_grad_(True)
    return params


def alignment_state(merger: torch.nn.Module, loras: dict[str, LoRA], full: dict[str, torch.nn.Parameter]) -> dict:
    """What an alignment run saves (fp16): ``merger.*``, ``lora.<weight>.A/B``, ``full.<param>``."""
    state = {f"merger.{k}": v.detach() for k, v in merger.state_dict().items()}
    for name, m in loras.items():
        state[f"lora.{name}.A"] = m.A.detach()
        state[f"lora.{name}.B"] = m.B.detach()
    state.update({f"full.{name}": p.detach() for name, p in full.items()})
    return {k: v.to(torch.float16).contiguous() for k, v in state.items()}


def answer_tokens(policy: Policy, sample: AlignSample) -> int:
    """Tokens of the right answer with its end-of-turn (SmolLM2 spells ``<answer>3, 1, 5</answer>``
    in 13 tokens)."""
    return len(answer_ids(policy, sample))


def answer_ids(policy: Policy, sample: AlignSample) -> torch.Tensor:
    text = format_answer(sample.answer) + "<|im_end|>"
    return policy.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]


def supervised_loss(policy: Policy, enc: Encoded, target: torch.Tensor) -> torch.Tensor:
    logp, _ = policy.token_logprobs(enc, target.unsqueeze(0))
    return -logp.mean()


@torch.no_grad()
def evaluate(policy: Policy, bank: FrameBank, samples: list[AlignSample]) -> dict:
    exact = valid = 0
    for s in samples:
        budget = answer_tokens(policy, s) + 4  # room for a longer (wrong) answer, never a truncated right one
        completion = policy.decode(policy.sample(bank.encode(policy, s), 1, budget, 1.0, greedy=True))[0]
        parsed = parse_answer(completion, s.k, s.num_candidates)
        valid += not parsed.failure_reason
        exact += parsed.indices == s.answer
    n = len(samples)
    chance = float(np.mean([1 / math.perm(s.num_candidates, s.k) for s in samples]))
    return {"exact": exact / n, "format": valid / n, "chance_exact": round(chance, 4)}


def held_out_sets(bank: FrameBank, config: AlignConfig) -> dict[str, list[AlignSample]]:
    """One held-out set per curriculum stage, on unseen videos, named as ``stage_name`` does."""
    sets = {}
    for k, n_distract, where, _ in config.stages():
        rng = random.Random(config.seed + 1)
        name = stage_name(k, n_distract, where)
        sets[name] = [bank.sample(rng, k, n_distract, where) for _ in range(config.held_out_samples)]
    return sets


def stage_name(k: int, n_distract: int, where: str) -> str:
    """``K2-l3-same`` for a matching stage, the kind (``where``) for a scene-fact stage."""
    return where if where in FACT_KINDS else f"K{k}-l{n_distract}-{where}"


def align(config: AlignConfig, out: Path = smol.ALIGN_FILE, log=print) -> dict:
    """Trains the alignment weights into ``out`` (+ ``.json`` summary, ``.png`` curve)."""
    from safetensors.torch import save_file

    torch.set_num_threads(config.threads)
    t0 = time.perf_counter()
    model, tokenizer, processor = smol.assemble(align_weights=None)
    policy = Policy.from_parts(model, tokenizer, processor)
    for p in model.parameters():
        p.requires_grad_(False)
    merger = model.model.visual.merger
    for p in merger.parameters():
        p.requires_grad_(True)
    torch.manual_seed(config.seed)
    full = full_layer_params(model, config.full_layer_range())
    loras = add_lora(model, config.lora_rank, config.targets(), skip_layers=config.full_layer_range())
    if config.init is not None:
        fresh = load_trainable(config.init, merger, loras, full)
        if fresh:
            log(f"{len(fresh)} LoRA targets not in {config.init} start from zero (B = 0), e.g. {fresh[0]}")
    lora_params = [p for m in loras.values() for p in (m.A, m.B)]
    groups = [
        (params, lr)
        for params, lr in (
            (list(merger.parameters()), config.lr_merger),
            (lora_params, config.lr_lora),
            (list(full.values()), config.lr_full),
        )
        if params
    ]
    opt = torch.optim.AdamW([{"params": params, "lr": lr} for params, lr in groups], weight_decay=0.0)
    train_bank = FrameBank(processor, TRAIN_VIDEOS_FROM, config.train_videos)
    held_bank = FrameBank(processor, HELD_OUT_VIDEOS_FROM, config.held_out_videos)
    held = held_out_sets(held_bank, config)
    log(f"frames ready in {time.perf_counter() - t0:.0f}s")
    model.eval()
    before = {name: evaluate(policy, held_bank, samples) for name, samples in held.items()}
    log(json.dumps({"before": before}))
    rng = random.Random(config.seed)
    total = sum(stage[3] for stage in config.stages())
    curve: list[dict] = []
    seen = 0
    losses: list[float] = []
    model.train()
    for k, n_distract, where, count in config.stages():
        name = stage_name(k, n_distract, where)
        for _ in range(0, count, config.batch):
            opt.zero_grad(set_to_none=True)
            for _ in range(config.batch):
                s = train_bank.sample(rng, k, n_distract, where)
                loss = supervised_loss(policy, train_bank.encode(policy, s), answer_ids(policy, s)) / config.batch
                loss.backward()
                losses.append(loss.item() * config.batch)
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
            lr_scale = 0.5 * (1 + math.cos(math.pi * seen / total))
            for g, (_, base) in zip(opt.param_groups, groups, strict=True):
                g["lr"] = base * lr_scale
            opt.step()
            seen += config.batch
            if seen % config.eval_every < config.batch:
                model.eval()
                point = {"samples": seen, "stage": name, "loss": round(float(np.mean(losses)), 4)}
                curve.append({**point, **evaluate(policy, held_bank, held[name])})
                losses = []
                model.train()
                log(json.dumps(curve[-1]))
    model.eval()
    state = alignment_state(merger, loras, full)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata={"config": config.model_dump_json()})
    after = {name: evaluate(policy, held_bank, samples) for name, samples in held.items()}
    summary = {
        "seconds": round(time.perf_counter() - t0, 1),
        "samples": seen,
        "trainable_parameters": sum(p.numel() for g in opt.param_groups for p in g["params"]),
        "before": before,
        "after": after,
        "curve": curve,
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_curve(curve, out.with_suffix(".png"))
    return summary


def load_trainable(
    path: Path, merger: torch.nn.Module, loras: dict[str, LoRA], full: dict[str, torch.nn.Parameter] | None = None
) -> list[str]:
    """Earlier alignment weights (``align.safetensors`` layout) into the merger, the LoRA wrappers
    and the layers trained in full (``full``: {parameter name: parameter}).

    A wrapper with no pair in the file (a target the earlier stage did not train) keeps B = 0, so
    it starts as the weights it wraps; its name is returned. A pair for a weight that this run
    trains in full is merged into it (W += BA), as the assembly would. A file pair with another
    rank, a pair for a target this run does not train, or full weights for a layer this run does not
    train in full, is an error: the merged model would differ.
    """
    from safetensors.torch import load_file

    full = full or {}
    state = load_file(str(path))
    merger.load_state_dict({k.removeprefix("merger."): v.float() for k, v in state.items() if k.startswith("merger.")})
    stray = smol.lora_names(state) - set(loras) - set(full)
    if stray:
        first = sorted(stray)[0]
        raise ValueError(f"{path}: LoRA pairs this run does not train ({first} and {len(stray) - 1} more)")
    stray = smol.full_names(state) - set(full)
    if stray:
        first = sorted(stray)[0]
        raise ValueError(f"{path}: weights trained in full that this run does not train in full ({first}, ...)")
    smol.apply_full(full, state, smol.lora_names(state) & set(full), path)
    fresh = []
    with torch.no_grad():
        for name, m in loras.items():
            a, b = state.get(f"lora.{name}.A"), state.get(f"lora.{name}.B")
            if a is None and b is None:
                fresh.append(name)
                continue
            if a is None or b is None or a.shape != m.A.shape:
                raise ValueError(f"{path}: no LoRA pair of shape {tuple(m.A.shape)} for {name} (another lora_rank?)")
            m.A.copy_(a.float())
            m.B.copy_(b.float())
    return fresh


def plot_curve(curve: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = [p["samples"] for p in curve]
    ax.plot(x, [p["exact"] for p in curve], marker="o", label="held-out exact (current stage)")
    ax.plot(x, [p["chance_exact"] for p in curve], linestyle="--", label="chance")
    ax.plot(x, [p["loss"] for p in curve], marker=".", label="train loss")
    for p in curve:
        ax.annotate(p["stage"], (p["samples"], p["exact"]), fontsize=6, rotation=30)
    ax.set_xlabel("training samples")
    ax.set_title("mvp-smol alignment (frame matching, scene facts)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
