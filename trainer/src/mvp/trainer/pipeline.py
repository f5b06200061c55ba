"""The main job (`mvp run`): store -> corpus -> services -> synthesis -> eval -> train -> eval ->
serve -> report, each a visible, timed stage. Everything it starts is stopped on exit.

Stages whose components are not built yet are reported as such (in the console and the report)
and skipped; the run still succeeds so every existing stage is exercised end to end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pydantic import BaseModel, Field

from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from mvp.synth.config import SynthConfig
from mvp.trainer.local import LocalTrainConfig
from mvp.trainer.supervisor import StageError, Supervisor, free_port

log = logging.getLogger(__name__)


class RunConfig(BaseModel):
    """Everything `mvp run` does, with defaults sized for ~10 minutes on a 2-core CPU."""

    input: str | None = Field(None, description="Folder or s3://bucket/prefix of your videos (default: procedural).")
    model: str = Field(
        "smol",
        description="Starting Video LLM: 'smol' (mvp-smol, aligned, the default), 'tiny' (random-init test "
        "fixture), a checkpoint folder or s3:// URI.",
    )
    videos: int = Field(24, ge=2, description="Procedural videos to generate (a quarter are held out).")
    video_seconds: float = Field(20.0, gt=0, description="Length of each procedural video.")
    steps: int = Field(
        8,
        ge=0,
        description="GRPO steps of the local training run (a demonstration of the loop: a GRPO step of "
        "mvp-smol takes ~40-80 s on 2 cores at the default 2 prompts x 4 completions).",
    )
    seed: int = Field(0, ge=0, description="Seed of the corpus, the synthesis and training.")
    out: Path = Field(Path(".mvp"), description="Working folder: store data, logs, report.")
    bucket: str = Field("mvp", description="Bucket for corpus, samples and checkpoints.")
    synth_addr: str | None = Field(None, description="Use this synth-service instead of starting one.")
    reward_addr: str | None = Field(None, description="Use this reward-service instead of starting one.")
    keep_serving: bool = Field(False, description="Leave the inference server running at the end.")
    eval_limit: int = Field(24, ge=1, description="Held-out samples evaluated before and after training.")
    train: LocalTrainConfig = Field(
        default_factory=lambda: LocalTrainConfig(prompts_per_step=2, group_size=4, checkpoint_every=4),
        description="Local GRPO recipe (steps is overridden by --steps); small groups keep the default run short.",
    )
    synth: SynthConfig = Field(
        default_factory=lambda: SynthConfig(num_frames=6, num_masked=2, num_distractors=2, samples_per_video=4),
        description="Sample synthesis config (small N, K, l keep a tiny model's context short on CPU).",
    )


@dataclass
class StageRecord:
    name: str
    status: str = "pending"  # ok | skipped | failed
    seconds: float = 0.0
    detail: str = ""


@dataclass
class RunState:
    config: RunConfig
    stages: list[StageRecord] = field(default_factory=list)
    store: StoreSettings | None = None
    synth_addr: str = ""
    reward_addr: str = ""
    splits: dict[str, dict] = field(default_factory=dict)
    evals: dict[str, dict] = field(default_factory=dict)
    served: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Pipeline:
    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.out = config.out.resolve()
        self.state = RunState(config)
        self.sup = Supervisor(self.out / "logs")
        self.served_name = "mvp-tiny" if config.model == "tiny" else "mvp-smol"

    def stage(self, name: str, func: Callable[[], str | None], *, missing: str | None = None) -> None:
        record = StageRecord(name)
        self.state.stages.append(record)
        say(f"\n== [{len(self.state.stages)}] {name}")
        if missing:
            record.status, record.detail = "skipped", missing
            say(f"   skipped: {missing}")
            return
        self.sup.check_interrupted()
        record.status = "running"
        t0 = time.perf_counter()
        try:
            record.detail = func() or ""
            record.status = "ok"
        except StageError as exc:
            record.status, record.detail = "failed", str(exc)
            raise StageError(f"stage '{name}' failed: {exc} (logs in {self.out / 'logs'})") from exc
        except Exception as exc:
            record.status, record.detail = "failed", f"{type(exc).__name__}: {exc}"
            raise StageError(f"stage '{name}' failed: {exc} (logs in {self.out / 'logs'})") from exc
        finally:
            record.seconds = round(time.perf_counter() - t0, 2)
        say(f"   done in {record.seconds:.1f}s{': ' + record.detail if record.detail else ''}")

    # --- stages -------------------------------------------------------------------------------

    def start_store(self) -> str:
        env_store = StoreSettings()
        if env_store.endpoint:
            self.state.store = env_store
            Storage(env_store).ensure_bucket(self.config.bucket)
            return f"using MVP_S3_ENDPOINT={env_store.endpoint}"
        port = free_port()
        child = self.sup.start(
            "store",
            [
                "store",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(self.out / "store"),
                "--buckets",
                self.config.bucket,
            ],
            # its shutdown writes the whole store to disk (a large corpus takes minutes); killing it
            # early keeps the previous snapshot, but loses this run's objects
            stop_timeout_s=600.0,
        )
        store = StoreSettings(endpoint=f"http://127.0.0.1:{port}")
        # "listening" is logged only after the snapshot of earlier runs is loaded back
        self.sup.wait_ready(child, lambda: "object store listening" in child.log_path.read_text(), 120)
        self.state.store = store
        return f"embedded S3-compatible store on 127.0.0.1:{port}, data in {self.out / 'store'}"

    def corpus(self) -> str:
        storage = Storage(self.state.store)
        if self.config.input:
            self.state.splits = {"train": {"input": self.config.input}}
            return f"using your corpus {self.config.input} (no held-out split: bring one with --input)"
        from mvp.synth.procedural import write_corpus

        n_held = max(1, self.config.videos // 4)
        n_train = self.config.videos - n_held
        local = self.out / "corpus"
        # held-out videos use seeds far from the training ones: never seen in training
        splits = {
            "train": (self.config.seed * 100_000, n_train),
            "heldout": (self.config.seed * 100_000 + 50_000, n_held),
        }
        uploaded = 0
        for split, (seed, count) in splits.items():
            paths = write_corpus(local / split, count, seed=seed, seconds=self.config.video_seconds)
            prefix = f"s3://{self.config.bucket}/corpus/{split}"
            existing = (
                {o.uri.rsplit("/", 1)[-1]: o.size for o in storage.list(prefix + "/")}
                if storage.bucket_exists(self.config.bucket)
                else {}
            )
            for path in paths:
                if existing.get(path.name) != path.stat().st_size:
                    storage.put_file(str(path), f"{prefix}/{path.name}", "video/mp4")
                    uploaded += 1
            self.state.splits[split] = {"input": prefix + "/", "videos": count}
        return f"{n_train} train + {n_held} held-out procedural videos ({uploaded} uploaded, rest reused)"

    def services(self) -> str:
        from mvp.clients import RewardClient, SynthClient

        env = {"MVP_S3_ENDPOINT": self.state.store.endpoint or ""}
        started = []
        if self.config.synth_addr:
            self.state.synth_addr = self.config.synth_addr
        else:
            port = free_port()
            child = self.sup.start("synth-service", ["synth", "serve", "--port", str(port), "--metrics-port", "0"], env)
            self.state.synth_addr = f"127.0.0.1:{port}"
            started.append(child)
        if self.config.reward_addr:
            self.state.reward_addr = self.config.reward_addr
        else:
            port = free_port()
            child = self.sup.start(
                "reward-service", ["reward", "serve", "--port", str(port), "--metrics-port", "0", "--http-port", "0"]
            )
            self.state.reward_addr = f"127.0.0.1:{port}"
            started.append(child)
        for child in started:
            client_cls = SynthClient if child.name == "synth-service" else RewardClient
            addr = self.state.synth_addr if child.name == "synth-service" else self.state.reward_addr
            client = client_cls(addr)
            self.sup.wait_ready(child, lambda c=client: c.wait_healthy(timeout_s=1.0) is None, 120)
            client.close()
        return f"synth-service {self.state.synth_addr}, reward-service {self.state.reward_addr} (SERVING)"

    def synthesis(self) -> str:
        from tqdm import tqdm

        from mvp.clients import SynthClient
        from mvp.v1 import synthesis_pb2

        config = self.config.synth.model_copy(update={"seed": self.config.seed})
        digest = config.digest()
        parts = []
        with SynthClient(self.state.synth_addr) as client:
            for split, info in self.state.splits.items():
                output = f"s3://{self.config.bucket}/samples/{digest}/{split}"
                bar = tqdm(desc=f"   synth {split}", unit="video", file=sys.stderr, total=None)
                final = client.run_job(
                    info["input"], output, config.to_proto(), on_update=partial(self._job_update, bar), timeout=1800
                )
                bar.close()
                if final.state != synthesis_pb2.JOB_STATE_SUCCEEDED:
                    raise StageError(f"synthesis job {final.job_id} ({split}) ended {final.state}: {final.error}")
                if final.samples_written == 0:
                    raise StageError(f"synthesis of {split} wrote no samples; see {output}/summary.json")
                info.update(
                    output=output,
                    samples=final.samples_written,
                    job_id=final.job_id,
                    ok=final.videos_ok,
                    skipped=final.videos_skipped,
                    failed=final.videos_failed,
                )
                parts.append(f"{split}: {final.samples_written} samples from {final.videos_ok} videos")
        return "; ".join(parts)

    def _job_update(self, bar, job) -> None:
        from mvp.synth.cli import job_progress

        self.sup.check_interrupted()
        job_progress(bar, job)

    def _samples_uri(self, split: str) -> str:
        return self.state.splits[split]["output"] + "/samples.jsonl"

    def baseline_eval(self) -> str:
        from mvp.trainer.runner import evaluate_checkpoint

        result = evaluate_checkpoint(
            self.config.model,
            self._samples_uri("heldout"),
            self.state.reward_addr,
            self.state.store,
            self.config.eval_limit,
        )
        self.state.evals["before"] = result
        return _fmt_eval(result)

    def training(self) -> str:
        from mvp.trainer.runner import train_local

        train_cfg = self.config.train.model_copy(update={"steps": self.config.steps, "seed": self.config.seed})
        output = f"s3://{self.config.bucket}/checkpoints/{run_id(self.config)}"
        summary = train_local(
            model=self.config.model,
            train_samples=self._samples_uri("train"),
            eval_samples=None,
            output=output,
            logdir=self.out / "train",
            reward_addr=self.state.reward_addr,
            config=train_cfg,
            store=self.state.store,
            resume=True,
            progress=True,
        )
        self.state.artifacts["checkpoint"] = summary["checkpoint"]
        self.state.artifacts["curves"] = summary["curves"]
        self.state.training = summary
        resumed = f", resumed from step {summary['resumed_from_step']}" if summary.get("resumed_from_step") else ""
        budget = " (time budget reached)" if summary.get("stopped_by_time_budget") else ""
        return (
            f"{summary['steps']} GRPO steps in {summary['train_seconds']}s{resumed}{budget}; "
            f"checkpoint {summary['checkpoint']}"
        )

    def final_eval(self) -> str:
        from mvp.trainer.runner import evaluate_checkpoint

        result = evaluate_checkpoint(
            self.state.artifacts["checkpoint"],
            self._samples_uri("heldout"),
            self.state.reward_addr,
            self.state.store,
            self.config.eval_limit,
        )
        self.state.evals["after"] = result
        return _fmt_eval(result)

    def serve_and_query(self) -> str:
        """Serves the trained checkpoint, asks it one held-out sample through the OpenAI API with
        the official client, and scores the answer through the reward-service."""
        import openai

        from mvp.clients import RewardClient
        from mvp.common.storage import Storage
        from mvp.model.policy import IMAGE_PLACEHOLDER
        from mvp.synth.corpus import label_json

        port = free_port()
        args = [
            "serve",
            "--port",
            str(port),
            "--model",
            self.state.artifacts["checkpoint"],
            "--served-model-name",
            self.served_name,
            "--allowed-buckets",
            self.config.bucket,
            "--reward-addr",
            self.state.reward_addr,
        ]
        env = {"MVP_S3_ENDPOINT": self.state.store.endpoint or ""}
        child = self.sup.start("inference", args, env, detached=self.config.keep_serving)
        base = f"http://127.0.0.1:{port}"
        self.sup.wait_ready(child, lambda: _http_ok(f"{base}/health"), 180)
        split = "heldout" if "heldout" in self.state.splits else "train"
        line = Storage(self.state.store).get_bytes(self._samples_uri(split)).decode().splitlines()[0]
        sample = json.loads(line)
        frames = [f["uri"] for f in sample["context_frames"] + sample["candidates"]]
        content: list[dict] = []
        for i, chunk in enumerate(sample["prompt"].split(IMAGE_PLACEHOLDER)):
            if i:
                content.append({"type": "image_url", "image_url": {"url": frames[i - 1]}})
            if chunk:
                content.append({"type": "text", "text": chunk})
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=2)
        reply = client.chat.completions.create(
            model=self.served_name, messages=[{"role": "user", "content": content}], max_tokens=32, temperature=0
        )
        answer = reply.choices[0].message.content or ""
        with RewardClient(self.state.reward_addr) as rc:
            (scored,) = rc.score([answer], [label_json(sample)])
        self.state.served = {
            "sample_id": sample["id"],
            "answer": answer,
            "reward": scored.reward,
            "ground_truth": sample["label"]["answer"],
            "url": base,
        }
        kept = f"; still serving at {base}/v1 (pid {child.popen.pid})" if self.config.keep_serving else ""
        return f"sample {sample['id']}: answered {answer!r}, reward {scored.reward:.3f}{kept}"

    def report(self) -> str:
        from mvp.trainer.report import write_report

        path = write_report(self.state, Storage(self.state.store), self.out / "report")
        self.state.artifacts["report"] = str(path)
        return str(path)

    # --- driver -------------------------------------------------------------------------------

    def run(self) -> int:
        def terminate(signum: int, _frame: object) -> None:
            self.sup.interrupted = signum
            raise KeyboardInterrupt(f"signal {signum}")

        # SIGTERM (a scheduler, `kill`) must stop the children too, exactly like Ctrl-C. SIGINT
        # stays ignored where the run was started with it ignored (a background job).
        stops = [signal.SIGTERM]
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            stops.append(signal.SIGINT)
        previous = {sig: signal.signal(sig, terminate) for sig in stops}
        try:
            self.stage("store", self.start_store)
            self.stage("corpus", self.corpus)
            self.stage("services", self.services)
            self.stage("synthesis", self.synthesis)
            no_heldout = None if "heldout" in self.state.splits else "no held-out split (bring one with --input)"
            self.stage("baseline eval", self.baseline_eval, missing=no_heldout)
            self.stage("training", self.training)
            self.stage("final eval", self.final_eval, missing=no_heldout)
            self.stage("serve and query", self.serve_and_query)
            self.stage("report", self.report)
        except StageError as exc:
            say(f"\nmvp run FAILED: {exc}")
            self._try_report()
            return 1
        except KeyboardInterrupt:
            say("\nmvp run interrupted; stopping everything it started")
            return 130
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.sup.stop_all()
        self._print_table()
        say(f"\nreport: {self.state.artifacts.get('report')}")
        return 0

    def _print_table(self) -> None:
        """The before/after held-out table, on the console."""
        if not self.state.evals:
            return
        keys = ("mean_reward", "exact", "selection", "ordering", "format")
        chance = next(iter(self.state.evals.values()))["chance_exact"]
        say(f"\nheld-out ({next(iter(self.state.evals.values()))['samples']} samples; chance exact = {chance:.3f})")
        say(f"  {'checkpoint':<10}" + "".join(f"{k:>13}" for k in keys))
        for name, result in self.state.evals.items():
            say(f"  {name:<10}" + "".join(f"{result[k]:>13.3f}" for k in keys))

    def _try_report(self) -> None:
        if self.state.store is None:
            return
        try:
            self.report()
        except Exception:
            log.debug("report after failure could not be written", exc_info=True)


def run_id(config: RunConfig) -> str:
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:12]


def _fmt_eval(result: dict) -> str:
    return (
        f"mean reward {result['mean_reward']:.3f}, exact {result['exact']:.3f} "
        f"(chance {result['chance_exact']:.3f}), format {result['format']:.2f} on {result['samples']} samples"
    )


def _http_ok(url: str) -> bool:
    import httpx

    return httpx.get(url, timeout=2).status_code == 200
