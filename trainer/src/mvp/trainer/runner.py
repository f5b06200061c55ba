"""Local training and evaluation runs, as the CLI and `mvp run` use them: resolve the model,
load samples, connect to the reward-service, train with progress, evaluate, write curves."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from mvp.clients import RewardClient
from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from mvp.model.policy import Policy
from mvp.model.resolve import resolve_model
from mvp.trainer.curves import CurveLogger
from mvp.trainer.data import Example, load_examples
from mvp.trainer.evaluate import evaluate
from mvp.trainer.local import LocalTrainConfig, LocalTrainer


def train_local(
    *,
    model: str,
    train_samples: str | list[str],
    eval_samples: str | None,
    output: str,
    logdir: Path,
    reward_addr: str,
    config: LocalTrainConfig,
    store: StoreSettings,
    resume: bool = True,
    eval_limit: int = 64,
    progress: bool = False,
) -> dict:
    torch.manual_seed(config.seed)
    storage = Storage(store)
    with tempfile.TemporaryDirectory(prefix="mvp-train-") as tmp:  # the model's download, the resume checkpoint
        work = Path(tmp)
        policy = Policy(resolve_model(model, storage, work))
        # several sample sets (e.g. a curriculum's easier K): prompts are drawn from all of them
        uris = [train_samples] if isinstance(train_samples, str) else train_samples
        train = [example for uri in uris for example in load_examples(storage, uri)]
        held = load_examples(storage, eval_samples, limit=eval_limit) if eval_samples else []
        client = RewardClient(reward_addr)
        client.wait_healthy(timeout_s=60)
        curves = CurveLogger(logdir)
        trainer = LocalTrainer(
            policy, train, client.score, config, storage, output, on_log=lambda e: curves.log(e.step, e.values)
        )
        summary: dict = {"train_samples": len(train), "eval_samples": len(held)}
        resumed = resume and trainer.resume(work)
        summary["resumed_from_step"] = trainer.step if resumed else None
        if not trainer.sft_done:
            summary.update(trainer.sft_format())
            trainer.freeze_reference()
        if held and trainer.step == 0:
            summary["before"] = evaluate(policy, held, client.score, config.max_new_tokens, trainer.encoded)
            curves.log(0, summary["before"], prefix="eval")
        summary.update(_grpo_loop(trainer, policy, held, client, curves, config, progress))
        summary["steps"] = trainer.step
        if held:
            summary["after"] = evaluate(policy, held, client.score, config.max_new_tokens, trainer.encoded)
            curves.log(trainer.step, summary["after"], prefix="eval")
        summary["curves"] = str(curves.close())
        summary["checkpoint"] = output.rstrip("/") + f"/step-{trainer.step:06d}"
        client.close()
        return summary


def _grpo_loop(
    trainer: LocalTrainer,
    policy: Policy,
    held: list[Example],
    client: RewardClient,
    curves: CurveLogger,
    config: LocalTrainConfig,
    progress: bool,
) -> dict:
    """GRPO steps until ``config.steps`` or the time budget, checkpointing and evaluating on the way;
    returns the run's timing facts for the summary."""
    facts: dict = {}
    bar = None
    if progress:
        from mvp.common.progress import progress as progress_bar

        bar = progress_bar(total=config.steps, initial=trainer.step, desc="grpo", unit="step")
    t0 = time.perf_counter()
    while trainer.step < config.steps:
        if config.time_budget_s and time.perf_counter() - t0 > config.time_budget_s:
            facts["stopped_by_time_budget"] = True
            if trainer.step % config.checkpoint_every:  # else the loop just committed this step
                trainer.checkpoint()
            break
        entry = trainer.grpo_step()
        if bar:
            bar.update(1)
            bar.set_postfix(reward=f"{entry.values['reward']:.3f}", exact=f"{entry.values['exact']:.2f}")
        if trainer.step % config.checkpoint_every == 0 or trainer.step == config.steps:
            trainer.checkpoint()
        if held and config.eval_every and trainer.step % config.eval_every == 0 and trainer.step < config.steps:
            curves.log(
                trainer.step,
                evaluate(policy, held, client.score, config.max_new_tokens, trainer.encoded),
                prefix="eval",
            )
    if bar:
        bar.close()
    if config.steps == 0:
        trainer.checkpoint()
    facts["train_seconds"] = round(time.perf_counter() - t0, 1)
    return facts


def evaluate_checkpoint(
    model: str,
    samples: str,
    reward_addr: str,
    store: StoreSettings,
    limit: int | None,
    max_new_tokens: int = 16,
    predictions: list[dict] | None = None,
) -> dict:
    """``evaluate`` on a checkpoint (folder, s3:// URI or a built-in name); per-sample records go to
    ``predictions`` when it is a list."""
    storage = Storage(store)
    with tempfile.TemporaryDirectory(prefix="mvp-eval-") as work:  # a downloaded checkpoint goes with it
        policy = Policy(resolve_model(model, storage, Path(work)))
        examples = load_examples(storage, samples, limit=limit)
        with RewardClient(reward_addr) as client:
            client.wait_healthy(timeout_s=60)
            return evaluate(policy, examples, client.score, max_new_tokens, predictions=predictions)
