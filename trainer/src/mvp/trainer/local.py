"""The local GRPO backend: the same loop OpenRLHF runs on clusters, in plain PyTorch on one
machine. Rollouts are sampled with transformers ``generate``; rewards come from the running
reward-service over gRPC; the update is ``mvp.trainer.grpo``.

Checkpoints (Hugging Face folders, safetensors) go to ``output_uri``; ``latest.json`` is written
after a checkpoint's files, so a resumed run always finds a complete one. Data order is a pure
function of (seed, step), so a resumed run sees exactly the batches the uninterrupted run would.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from mvp.common.storage import Storage, StorageError, download_folder, is_s3, join
from mvp.model.policy import Encoded, Policy, reorder_images
from mvp.trainer.config import LocalTrainConfig
from mvp.trainer.data import Example, balanced_orders, permuted_label, random_answer, random_label
from mvp.trainer.grpo import group_advantages, grpo_loss

log = logging.getLogger(__name__)


@dataclass
class Group:
    """One prompt's rollouts: its member prompts (one ``Encoded``, or one per member under
    ``balanced_groups``), completions (G, T), the sampler's log-probs of their tokens, the texts
    and each member's label."""

    example: Example
    enc: Encoded | list[Encoded]
    completions: torch.Tensor
    behaviour: torch.Tensor
    texts: list[str]
    labels: list[str]


@dataclass
class StepLog:
    step: int
    values: dict[str, float]


def lr_at(config: LocalTrainConfig, step: int) -> float:
    """The learning rate of GRPO step ``step`` (0-based): a pure function of the step, so a resumed run
    continues the schedule exactly."""
    if config.lr_scheduler == "constant":
        return config.lr
    progress = min(step / max(1, config.steps), 1.0)
    low = config.lr * config.min_lr_ratio
    return low + (config.lr - low) * 0.5 * (1.0 + math.cos(math.pi * progress))


def batch_indices(n: int, per_step: int, step: int, seed: int) -> list[int]:
    """Deterministic data order: epoch e is a seeded permutation; step s takes its slice."""
    per_epoch = max(1, n // per_step)
    epoch, offset = divmod(step, per_epoch)
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order[offset * per_step : (offset + 1) * per_step]


class LocalTrainer:
    def __init__(
        self,
        policy: Policy,
        train: list[Example],
        score: Callable[..., list],
        config: LocalTrainConfig,
        storage: Storage,
        output_uri: str,
        on_log: Callable[[StepLog], None] | None = None,
        encode_cache: dict[str, Encoded] | None = None,
    ) -> None:
        """``encode_cache``: processed prompts by sample id, shared with other runs on the same policy
        (e.g. a run and its control), so each sample's frames go through the processor once."""
        self.policy = policy
        self.train = train
        self.score = score
        self.config = config
        self.storage = storage
        self.output_uri = output_uri.rstrip("/")
        self.on_log = on_log
        self._encoded: dict[str, Encoded] = {} if encode_cache is None else encode_cache
        torch.manual_seed(config.seed)
        self.trainable = select_trainable(policy.model, config)
        self.optimizer = torch.optim.AdamW(self.trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.ref: torch.nn.Module | None = None
        self.step = 0
        self.sft_done = False

    def encoded(self, ex: Example) -> Encoded:
        if ex.id not in self._encoded:
            self._encoded[ex.id] = self.policy.encode(ex.prompt, ex.images)
        return self._encoded[ex.id]

    # --- the run ---------------------------------------------------------------------------------

    def fit(
        self,
        evaluate: Callable[[], dict] | None = None,
        on_eval: Callable[[int, dict], None] | None = None,
        progress: bool = False,
    ) -> dict:
        """The whole training run, resumable: the format warm-up and the frozen reference (unless a
        resumed checkpoint is past them), then GRPO steps until ``steps`` or ``time_budget_s``, a
        checkpoint every ``save_steps`` steps and at the end, and ``evaluate`` (held-out) every
        ``eval_steps`` steps before the last, handed to ``on_eval``. Returns the run's facts."""
        cfg = self.config
        facts: dict = {}
        if not self.sft_done:
            facts.update(self.sft_format())
            self.freeze_reference()
        bar = None
        if progress:
            from mvp.common.progress import progress as progress_bar

            bar = progress_bar(total=cfg.steps, initial=self.step, desc="grpo", unit="step")
        t0 = time.perf_counter()
        while self.step < cfg.steps:
            if cfg.time_budget_s and time.perf_counter() - t0 > cfg.time_budget_s:
                facts["stopped_by_time_budget"] = True
                if self.step % cfg.save_steps:  # else the loop just committed this step
                    self.checkpoint()
                break
            entry = self.grpo_step()
            if bar:
                bar.update(1)
                bar.set_postfix(reward=f"{entry.values['reward']:.3f}", exact=f"{entry.values['exact']:.2f}")
            if self.step % cfg.save_steps == 0 or self.step == cfg.steps:
                self.checkpoint()
            if evaluate and cfg.eval_steps and self.step % cfg.eval_steps == 0 and self.step < cfg.steps:
                result = evaluate()
                if on_eval:
                    on_eval(self.step, result)
        if bar:
            bar.close()
        if cfg.steps == 0:
            self.checkpoint()
        facts["train_seconds"] = round(time.perf_counter() - t0, 1)
        facts["prompts_seen"] = self.step * cfg.prompts_per_step
        return facts

    # --- format warm-up ---------------------------------------------------------------------

    def sft_format(self) -> dict[str, float]:
        """Teaches the answer format with random well-formed answers (no task information)."""
        cfg = self.config
        rng = random.Random(cfg.seed + 17)
        opt = torch.optim.AdamW(self.trainable, lr=cfg.sft_lr)
        tok = self.policy.tokenizer
        losses = []
        self.policy.model.train()
        for step in range(cfg.sft_steps):
            opt.zero_grad()
            total = 0.0
            for idx in batch_indices(len(self.train), cfg.prompts_per_step, step, cfg.seed + 7):
                ex = self.train[idx]
                target = random_answer(ex, rng) + "<|im_end|>"
                ids = tok(target, add_special_tokens=False, return_tensors="pt")["input_ids"]
                logp, _ = self.policy.token_logprobs(self.encoded(ex), ids)
                loss = -logp.mean() / cfg.prompts_per_step
                loss.backward()
                total += loss.item()
            torch.nn.utils.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
            opt.step()
            losses.append(total)
        self.sft_done = True
        return {"sft_steps": cfg.sft_steps, "sft_final_loss": losses[-1] if losses else 0.0}

    # --- GRPO -----------------------------------------------------------------------------------

    def freeze_reference(self) -> None:
        self.ref = copy.deepcopy(self.policy.model).eval()
        for p in self.ref.parameters():
            p.requires_grad_(False)

    def grpo_step(self) -> StepLog:
        cfg = self.config
        t0 = time.perf_counter()
        batch = [self.train[i] for i in batch_indices(len(self.train), cfg.prompts_per_step, self.step, cfg.seed)]
        self.policy.model.eval()
        groups = self.rollout(batch)
        t_gen = time.perf_counter() - t0

        t1 = time.perf_counter()
        # per-index credit for the in_place_k logs (64 completions: ~1 ms more)
        results = self.score([t for g in groups for t in g.texts], self.labels(groups), include_slots=True)
        t_reward = time.perf_counter() - t1
        rewards = torch.tensor([r.reward for r in results], dtype=torch.float32).view(len(groups), -1)
        advantages = group_advantages(rewards, estimator=cfg.advantage_estimator)
        t2 = time.perf_counter()
        active = [i for i in range(len(groups)) if advantages[i].abs().sum() > 0]
        # With an entropy bonus every group trains: a collapsed group (all answers alike) is exactly
        # the one the bonus is for. Otherwise groups without signal are skipped.
        trained = list(range(len(groups))) if cfg.entropy_coef > 0 else active
        stats = self.update([groups[i] for i in trained], [advantages[i] for i in trained])
        t_update = time.perf_counter() - t2

        lengths = [float(self.policy.completion_mask(g.completions).sum(1).mean()) for g in groups]
        values = {
            "reward": float(rewards.mean()),
            "reward_std_in_group": float(rewards.std(dim=1, unbiased=False).mean()),
            "format": _mean(results, "format"),
            "selection": _mean(results, "selection"),
            "ordering": _mean(results, "ordering"),
            "exact": _mean(results, "exact"),
            **_in_place(results, [g.example.k for g in groups for _ in g.texts]),
            "parse_failed": sum(1 for r in results if r.failure_reason) / len(results),
            "response_length": sum(lengths) / len(lengths),
            "groups_with_signal": len(active) / len(groups),
            **stats,
            "lr": lr_at(cfg, self.step),
            "time_generate_s": t_gen,
            "time_reward_s": t_reward,
            "time_update_s": t_update,
            "time_step_s": time.perf_counter() - t0,
        }
        self.step += 1
        entry = StepLog(self.step, values)
        if self.on_log:
            self.on_log(entry)
        return entry

    def rollout(self, batch: list[Example]) -> list[Group]:
        """One group per example: ``n_samples_per_prompt`` completions (each member with its own
        candidate order under ``balanced_groups``), with their labels and the sampler's log-probs.
        The groups decode together (``Policy.sample_groups``)."""
        cfg = self.config
        plans = [self.members(ex) for ex in batch]
        sampled = self.policy.sample_groups(
            [enc for enc, _ in plans],
            cfg.n_samples_per_prompt,
            cfg.max_new_tokens,
            cfg.temperature,
            bf16_prefill=cfg.bf16_prefill,
        )
        return [
            Group(ex, enc, completions, behaviour, self.policy.decode(completions), labels)
            for ex, (enc, labels), (completions, behaviour) in zip(batch, plans, sampled, strict=True)
        ]

    def members(self, ex: Example) -> tuple[Encoded | list[Encoded], list[str]]:
        """What each member of ``ex``'s group sees and is scored against: the one prompt and label, or
        under ``balanced_groups`` the candidates in ``orders_per_group`` orders (equal runs of members
        per order, one ``Encoded`` object per order so its prompt runs once) with remapped labels."""
        cfg = self.config
        n = cfg.n_samples_per_prompt
        if not cfg.balanced_groups:
            return self.encoded(ex), [ex.label_json] * n
        rng = random.Random(f"{cfg.seed}:{self.step}:{ex.id}")
        distinct = cfg.orders_per_group or n
        orders = balanced_orders(ex, distinct, rng)
        n_context = len(ex.images) - ex.num_candidates
        prompts = [reorder_images(self.encoded(ex), [*range(n_context), *(n_context + i for i in o)]) for o in orders]
        run = n // distinct
        return [p for p in prompts for _ in range(run)], [permuted_label(ex, o) for o in orders for _ in range(run)]

    def labels(self, groups: list[Group]) -> list[str]:
        """The label each completion is scored against. The control run breaks the link between what a
        member saw and its label: balanced groups score each member against another member's label
        (same positions, other frames); plain groups against a random answer."""
        if not self.config.control_random_labels:
            return [label for g in groups for label in g.labels]
        rng = random.Random(self.config.seed * 1_000_003 + self.step + 1)
        if self.config.balanced_groups:
            out = []
            for g in groups:
                # shift by whole runs of one order, so no member keeps its own order's label
                run = len(g.labels) // (self.config.orders_per_group or len(g.labels))
                shift = run * rng.randrange(1, len(g.labels) // run)
                out += g.labels[shift:] + g.labels[:shift]
            return out
        return [label for g in groups for label in [random_label(g.example, rng)] * len(g.texts)]

    def update(self, groups: list[Group], advantages: list[torch.Tensor]) -> dict[str, float]:
        """``ppo_epochs`` passes of the clipped GRPO loss over the groups. The old log-probs are the
        first pass's (before any step on this batch), kept for the later passes, so their ratio and
        clipping act; every pass scores the completions at the rollouts' temperature."""
        cfg = self.config
        stats = {"policy_loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "entropy": 0.0, "logprob_gap": 0.0}
        if not groups:
            return stats
        self.policy.model.train()
        device = torch.device(self.policy.device).type
        old: list[torch.Tensor] = []
        lr = lr_at(cfg, self.step)
        share = 1.0 / (len(groups) * cfg.ppo_epochs)
        for epoch in range(cfg.ppo_epochs):
            self.optimizer.zero_grad()
            for i, g in enumerate(groups):
                mask = self.policy.completion_mask(g.completions)
                with torch.autocast(device, dtype=torch.bfloat16, enabled=cfg.bf16_update):
                    logp, entropy = self.policy.token_logprobs(g.enc, g.completions, temperature=cfg.temperature)
                    ref_logp = None
                    if self.ref is not None and cfg.init_kl_coef > 0:
                        with torch.no_grad():
                            ref_logp, _ = self.policy.token_logprobs(
                                g.enc, g.completions, model=self.ref, temperature=cfg.temperature
                            )
                if epoch == 0:
                    old.append(logp.detach())
                    # the sampler's and the update's log-probs of the same tokens (~0 in fp32; bf16
                    # rounding under bf16_update; a mismatch of temperature or weights shows here)
                    gap = ((logp.detach() - g.behaviour.to(logp.device)).abs() * mask).sum() / mask.sum().clamp(min=1)
                    stats["logprob_gap"] += float(gap) / len(groups)
                out = grpo_loss(
                    logp,
                    old[i],
                    ref_logp,
                    advantages[i],
                    mask,
                    cfg.eps_clip,
                    cfg.init_kl_coef,
                    entropy,
                    cfg.entropy_coef,
                )
                (out.loss / len(groups)).backward()
                stats["policy_loss"] += out.policy_loss * share
                stats["kl"] += out.kl * share
                stats["clip_fraction"] += out.clip_fraction * share
                stats["entropy"] += float((entropy.detach() * mask).sum() / mask.sum().clamp(min=1)) * share
            torch.nn.utils.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.step()
        return stats

    # --- checkpoints ----------------------------------------------------------------------------

    def checkpoint(self) -> str:
        """Writes step-NNNNNN/ (HF folder + trainer_state.pt), then latest.json (the commit)."""
        name = f"step-{self.step:06d}"
        uri = join(self.output_uri, name)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / name
            self.policy.save(folder)
            state = {
                "step": self.step,
                "sft_done": self.sft_done,
                "optimizer": self.optimizer.state_dict(),
                "ref": self.ref.state_dict() if self.ref is not None else None,
                "torch_rng": torch.get_rng_state(),
                "config": self.config.model_dump(),
            }
            torch.save(state, folder / "trainer_state.pt")
            for path in sorted(folder.iterdir()):
                self.storage.put_file(str(path), join(uri, path.name))
        self.storage.put_bytes(
            join(self.output_uri, "latest.json"), json.dumps({"step": self.step, "uri": uri}).encode()
        )
        log.info("checkpoint written", extra={"step": self.step, "uri": uri})
        if self.config.max_ckpt_num:
            try:
                prune_checkpoints(self.storage, self.output_uri, self.config.max_ckpt_num, committed=uri)
            except StorageError as exc:  # the next checkpoint retries; training goes on
                log.warning("old checkpoints not deleted", extra={"error": str(exc)})
        return uri

    def resume(self, local_dir: Path) -> bool:
        """Loads the latest committed checkpoint, if any. Returns whether one was found."""
        latest = join(self.output_uri, "latest.json")
        if not self.storage.exists(latest):
            return False
        info = json.loads(self.storage.get_bytes(latest))
        uri = checkpoint_uri(self.output_uri, info)
        folder = download_checkpoint(self.storage, uri, local_dir)
        from safetensors.torch import load_file

        self.policy.model.load_state_dict(load_file(folder / "model.safetensors"), strict=False)
        # weights_only: tensors and plain containers only; a pickle in the store never runs code here
        state = torch.load(folder / "trainer_state.pt", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        if state["ref"] is not None:
            self.ref = copy.deepcopy(self.policy.model).eval()
            self.ref.load_state_dict(state["ref"])
            for p in self.ref.parameters():
                p.requires_grad_(False)
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
        self.sft_done = bool(state["sft_done"])
        log.info("resumed", extra={"step": self.step, "uri": uri})
        return True


def select_trainable(model: torch.nn.Module, config: LocalTrainConfig) -> list[torch.nn.Parameter]:
    """Freezes what the recipe keeps fixed (the ViT blocks and the token embeddings by default) and
    returns the parameters the optimiser updates: only those get AdamW state and gradients."""
    frozen = []
    if not config.train_vision:
        visual = model.model.visual
        frozen += [module for name, module in visual.named_children() if name != "merger"]
    if not config.train_embeddings:
        frozen.append(model.get_input_embeddings())
        frozen.append(model.get_output_embeddings())
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


CHECKPOINT_NAME = re.compile(r"step-\d{6}")


class CheckpointError(ValueError):
    """A ``latest.json`` that does not name a checkpoint of its own run."""


def checkpoint_uri(output_uri: str, info: dict) -> str:
    """The checkpoint ``latest.json`` commits, confined to the run's own prefix: only
    ``<output>/step-NNNNNN`` is accepted, whatever a tampered file says."""
    uri = str(info.get("uri", "")).rstrip("/")
    name = uri.rsplit("/", 1)[-1]
    if not CHECKPOINT_NAME.fullmatch(name) or uri != join(output_uri.rstrip("/"), name):
        raise CheckpointError(f"latest.json names {uri!r}, not a step-NNNNNN checkpoint under {output_uri}")
    return uri


def prune_checkpoints(storage: Storage, output_uri: str, keep: int, committed: str) -> list[str]:
    """Deletes the run's step-NNNNNN folders older than its newest ``keep`` (only direct children of
    ``output_uri`` with that name; never ``committed``, the one latest.json names). Returns the
    deleted folders."""
    root = output_uri.rstrip("/") if is_s3(output_uri) else str(Path(output_uri))
    folders: dict[str, list[str]] = {}
    for obj in storage.list(root):
        name, _, rest = obj.uri[len(root) + 1 :].partition("/")
        if CHECKPOINT_NAME.fullmatch(name) and rest:
            folders.setdefault(name, []).append(obj.uri)
    stale = [n for n in sorted(folders)[:-keep] if join(output_uri, n) != committed.rstrip("/")]
    for name in stale:
        if is_s3(root):
            for uri in folders[name]:
                storage.delete(uri)
        else:
            shutil.rmtree(Path(root) / name)
        log.info("checkpoint deleted", extra={"uri": join(output_uri, name), "keep": keep})
    return [join(output_uri, n) for n in stale]


def download_checkpoint(storage: Storage, uri: str, local_dir: Path) -> Path:
    """Downloads a checkpoint folder into ``local_dir/step-NNNNNN``."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    if not CHECKPOINT_NAME.fullmatch(name):
        raise CheckpointError(f"{uri!r} is not a step-NNNNNN checkpoint")
    return download_folder(storage, uri, local_dir / name)


def _in_place(results: list, ks: list[int]) -> dict[str, float]:
    """Per answer place k, the share of the completions asked for at least k indices whose k-th
    index is the right frame for its place (``in_place_1`` ... ``in_place_K``; an unparsed
    completion counts as wrong)."""
    out = {}
    for k in range(max(ks, default=0)):
        asked = [r for r, n in zip(results, ks, strict=True) if n > k]
        out[f"in_place_{k + 1}"] = sum(1 for r in asked if len(r.slots) > k and r.slots[k].in_place) / len(asked)
    return out


def _mean(results: list, name: str) -> float:
    return sum(getattr(r.components, name) for r in results) / max(1, len(results))
