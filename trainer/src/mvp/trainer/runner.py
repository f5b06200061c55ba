"""Local training and evaluation runs, as the CLI and `mvp run` use them: resolve the model,
load samples, connect to the reward-service, train with progress, evaluate, write curves."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch

from mvp.clients import RewardClient
from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from mvp.model.policy import Policy
from mvp.model.resolve import resolve_model
from mvp.trainer.curves import CurveLogger
from mvp.trainer.data import load_examples
from mvp.trainer.evaluate import evaluate
from mvp.trainer.local import LocalTrainConfig, LocalTrainer

log = logging.getLogger(__name__)


def load_policy(model: str, storage: Storage, work: Path, device: str = "cpu") -> Policy:
    """The model a ``--model`` names (folder, s3:// URI, 'smol', 'tiny') as a ``Policy``; every load
    is logged (``model loaded: ...``), so a run's log shows how often each model was read."""
    policy = Policy(resolve_model(model, storage, work), device=device)
    log.info("model loaded: %s", model)
    return policy


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
    policy: Policy | None = None,
) -> dict:
    """GRPO on ``model`` (or on ``policy``, already loaded, trained in place), resumable from the
    checkpoints under ``output``; returns the run's facts (``checkpoint``: the last one's URI)."""
    torch.manual_seed(config.seed)
    storage = Storage(store)
    with tempfile.TemporaryDirectory(prefix="mvp-train-") as tmp:  # the model's download, the resume checkpoint
        work = Path(tmp)
        policy = policy or load_policy(model, storage, work)
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

        def held_out() -> dict:
            return evaluate(policy, held, client.score, config.max_new_tokens, trainer.encoded)

        if held and trainer.step == 0:
            summary["before"] = held_out()
            curves.log(0, summary["before"], prefix="eval")
        summary.update(
            trainer.fit(
                held_out if held else None,
                on_eval=lambda step, result: curves.log(step, result, prefix="eval"),
                progress=progress,
            )
        )
        summary["steps"] = trainer.step
        if held:
            summary["after"] = evaluate(policy, held, client.score, config.max_new_tokens, trainer.encoded)
            curves.log(trainer.step, summary["after"], prefix="eval")
        summary["curves"] = str(curves.close())
        summary["checkpoint"] = output.rstrip("/") + f"/step-{trainer.step:06d}"
        client.close()
        return summary


def evaluate_checkpoint(
    model: str,
    samples: str | dict[str, str],
    reward_addr: str,
    store: StoreSettings,
    limit: int | None,
    max_new_tokens: int = 16,
    predictions: list[dict] | dict[str, list[dict]] | None = None,
    diagnostics: bool = False,
) -> dict:
    """``evaluate_tasks`` on a checkpoint (folder, s3:// URI or a built-in name), loaded once. ``samples``
    is one samples.jsonl (the result is then that task's, and ``predictions`` a list), or {task name:
    samples.jsonl} as ``evaluate_tasks`` takes."""
    if isinstance(samples, str):
        tasks, rows = {"": samples}, ({"": predictions} if isinstance(predictions, list) else None)
    else:
        tasks, rows = samples, (predictions if isinstance(predictions, dict) else None)
    with tempfile.TemporaryDirectory(prefix="mvp-eval-") as work:  # a downloaded checkpoint goes with it
        policy = load_policy(model, Storage(store), Path(work))
        out = evaluate_tasks(policy, tasks, reward_addr, store, limit, max_new_tokens, rows, diagnostics)
        return out[""] if isinstance(samples, str) else out


def evaluate_tasks(
    policy: Policy,
    tasks: dict[str, str],
    reward_addr: str,
    store: StoreSettings,
    limit: int | None,
    max_new_tokens: int = 16,
    predictions: dict[str, list[dict]] | None = None,
    diagnostics: bool = False,
) -> dict[str, dict]:
    """``evaluate`` on every task ({name: samples.jsonl}) with the same weights; ``predictions`` (a
    dict) collects each task's per-sample rows under its name."""
    storage = Storage(store)
    out = {}
    with RewardClient(reward_addr) as client:
        client.wait_healthy(timeout_s=60)
        for name, uri in tasks.items():
            rows = predictions.setdefault(name, []) if predictions is not None else None
            examples = load_examples(storage, uri, limit=limit)
            out[name] = evaluate(
                policy, examples, client.score, max_new_tokens, predictions=rows, diagnostics=diagnostics
            )
    return out
