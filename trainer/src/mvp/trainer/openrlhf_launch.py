"""The cluster backend: one MVP recipe -> an OpenRLHF (Ray + vLLM + DeepSpeed) GRPO run.

``build_args`` maps the recipe onto `openrlhf.cli.train_ppo_ray` flags (OpenRLHF 0.11 names);
``check_args`` parses them with OpenRLHF's own parser and post-parse assertions where OpenRLHF is
installed, else with its recorded parser and the constraints it asserts (mvp.trainer.openrlhf_args);
``stage_dataset`` rewrites synth-service's openrlhf.jsonl for the model (chat messages with image
parts, presigned image URLs that OpenRLHF fetches over HTTP, so rollout workers never touch video);
``submit`` sends it to a Ray cluster with `ray job submit`.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from mvp.common.sample import prompt_messages
from mvp.common.settings import load_config_file
from mvp.common.storage import Storage, is_s3
from mvp.trainer.config import OPENRLHF_FLAGS, GrpoConfig
from mvp.trainer.openrlhf_args import (
    OPENRLHF_VERSION,
    OpenRLHFRefusedError,
    installed_source,
    openrlhf_main_args,
    parser,
)

# Versions that work together: OpenRLHF 0.11.2's own pins (its wheel's Requires-Dist).
PINS = {
    "openrlhf": OPENRLHF_VERSION,
    "vllm": "0.29.0",
    "transformers": "5.15.0",
    "deepspeed": "0.19.6",
    "ray": "2.55.0",
    "flash-attn": "2.8.3",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClusterSection(_Section):
    address: str = Field("http://127.0.0.1:8265", description="Ray dashboard / Jobs API address.")
    nodes: int = Field(1, ge=1, description="Nodes for actor and reference.")
    gpus_per_node: int = Field(8, ge=1, description="GPUs per node.")
    colocate_all: bool = Field(True, description="Actor, reference and vLLM share GPUs (hybrid engine).")


class GrpoSection(GrpoConfig):
    """The algorithm (``mvp.trainer.config.GrpoConfig``, shared with the local loop) and what only
    the cluster run has."""

    dynamic_filtering: bool = Field(False, description="Drop groups whose rewards are all equal.")


class BatchSection(_Section):
    rollout_batch_size: int = Field(128, ge=1, description="Prompts per rollout.")
    train_batch_size: int = Field(128, ge=1, description="Global training batch (sequences).")
    micro_rollout_batch_size: int = Field(4, ge=1, description="Per-GPU rollout micro batch.")
    micro_train_batch_size: int = Field(1, ge=1, description="Per-GPU training micro batch.")
    episodes: int = Field(2, ge=1, description="Passes over the prompt dataset.")
    max_epochs: int = Field(1, ge=1, description="Updates per rollout batch.")


class LengthSection(_Section):
    max_len: int = Field(8192, ge=256, description="Prompt + response tokens.")
    max_images_per_prompt: int = Field(16, ge=1, description="N - K context + K + l candidates.")


class VllmSection(_Section):
    num_engines: int = Field(8, ge=1, description="vLLM engines.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per engine.")
    gpu_memory_utilization: float = Field(0.6, gt=0, le=1, description="vLLM share of GPU memory (colocated).")
    enable_sleep: bool = Field(True, description="Free vLLM memory during training (colocated).")


class Recipe(_Section):
    """One MVP GRPO run on an OpenRLHF cluster (trainer/recipes/*.yaml)."""

    model: str = Field(description="HF model path on the nodes (or hub id where nodes can download).")
    dataset: str = Field(description="synth-service's openrlhf.jsonl (s3:// or path).")
    eval_dataset: str | None = Field(None, description="Held-out openrlhf.jsonl.")
    reward_url: str = Field(
        description="reward-service HTTP endpoint (http://reward:8092/score), a reward_func .py, or 'reward_func': "
        "the installed MVP plug-in (gRPC, with MVP_REWARD_ADDR / MVP_REWARD_TOKEN / MVP_REWARD_TLS_CA on the "
        "workers; the route to use when the reward-service requires a token, which OpenRLHF's HTTP client "
        "cannot send)"
    )
    output_dir: str = Field("/data/mvp/ckpt", description="Checkpoint folder on shared storage.")
    tensorboard_dir: str | None = Field("/data/mvp/tensorboard", description="TensorBoard folder.")
    lr: float = Field(1e-6, gt=0, description="Actor learning rate.")
    seed: int = Field(42, description="Training seed.")
    save_steps: int = Field(20, ge=1, description="Checkpoint every N steps.")
    max_ckpt_num: int = Field(3, ge=1, description="DeepSpeed checkpoints kept (--ckpt.max_num).")
    eval_steps: int = Field(10, ge=1, description="Evaluate every N steps.")
    freeze_visual_encoder: bool = Field(False, description="Train only the language model.")
    zero_stage: int = Field(3, ge=0, le=3, description="DeepSpeed ZeRO stage.")
    cluster: ClusterSection = Field(default_factory=ClusterSection)
    grpo: GrpoSection = Field(default_factory=GrpoSection)
    batch: BatchSection = Field(default_factory=BatchSection)
    lengths: LengthSection = Field(default_factory=LengthSection)
    vllm: VllmSection = Field(default_factory=VllmSection)
    extra_args: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Further train_ppo_ray flags, verbatim (checked against the parser)."
    )

    @classmethod
    def load(cls, path: Path) -> Recipe:
        return cls.model_validate(load_config_file(path))


def reward_target(url: str) -> str:
    """The recipe's reward_url as OpenRLHF takes it; 'reward_func' is the installed plug-in file of
    mvp-reward-service (found by name, in the environment that runs OpenRLHF)."""
    if url != "reward_func":
        return url
    import importlib.util

    spec = importlib.util.find_spec("mvp.reward.reward_func")
    if spec is None or spec.origin is None:
        raise ValueError("reward_url 'reward_func' needs mvp-reward-service installed where OpenRLHF runs")
    return spec.origin


def build_args(recipe: Recipe, prompt_dataset: str, eval_dataset: str | None = None) -> list[str]:
    """train_ppo_ray flags for the recipe (GRPO = group_norm advantages, k3 KL as a loss)."""
    c, g, b, ln, v = recipe.cluster, recipe.grpo, recipe.batch, recipe.lengths, recipe.vllm
    flags: dict[str, object] = {
        "--actor.model_name_or_path": recipe.model,
        "--actor.num_nodes": c.nodes,
        "--actor.num_gpus_per_node": c.gpus_per_node,
        "--ref.num_nodes": c.nodes,
        "--ref.num_gpus_per_node": c.gpus_per_node,
        "--vllm.num_engines": v.num_engines,
        "--vllm.tensor_parallel_size": v.tensor_parallel_size,
        "--vllm.gpu_memory_utilization": v.gpu_memory_utilization,
        "--algo.kl.estimator": "k3",
        "--actor.loss_agg_mode": "token-mean",
        "--rollout.batch_size": b.rollout_batch_size,
        "--rollout.micro_batch_size": b.micro_rollout_batch_size,
        "--train.batch_size": b.train_batch_size,
        "--train.micro_batch_size": b.micro_train_batch_size,
        "--train.num_episodes": b.episodes,
        "--train.max_epochs": b.max_epochs,
        "--train.seed": recipe.seed,
        "--data.max_len": ln.max_len,
        "--data.max_images_per_prompt": ln.max_images_per_prompt,
        "--data.prompt_dataset": prompt_dataset,
        "--data.input_key": "prompt",
        "--data.label_key": "label",
        "--data.image_key": "images",
        "--reward.remote_url": reward_target(recipe.reward_url),
        "--actor.adam.lr": recipe.lr,
        "--ds.zero_stage": recipe.zero_stage,
        "--ds.param_dtype": "bf16",
        "--ckpt.output_dir": recipe.output_dir,
        "--ckpt.path": f"{recipe.output_dir.rstrip('/')}/ds_checkpoints",
        "--ckpt.save_steps": recipe.save_steps,
        "--ckpt.max_num": recipe.max_ckpt_num,
        **{flag: getattr(g, name) for name, flag in OPENRLHF_FLAGS.items()},
    }
    switches = [
        "--data.apply_chat_template",
        "--ckpt.save_hf",
        "--ckpt.load_enable",
        "--algo.kl.use_loss",
        "--actor.gradient_checkpointing_enable",
    ]
    if c.colocate_all:
        switches.append("--train.colocate_all")
    if v.enable_sleep:
        switches += ["--vllm.enable_sleep", "--ds.enable_sleep"]
    if g.dynamic_filtering:
        switches.append("--algo.dynamic_filtering_enable")
    if recipe.freeze_visual_encoder:
        switches.append("--actor.freeze_visual_encoder")
    if eval_dataset:
        flags["--eval.dataset"] = eval_dataset
        flags["--eval.steps"] = recipe.eval_steps
    if recipe.tensorboard_dir:
        flags["--logger.tensorboard_dir"] = recipe.tensorboard_dir
    args: list[str] = []
    for flag, value in flags.items():
        args += [flag, str(value)]
    args += switches
    for flag, value in recipe.extra_args.items():
        name = flag if flag.startswith("--") else f"--{flag}"
        if value is True:
            args.append(name)
        elif value is not False:
            args += [name, str(value)]
    return args


class RecipeError(ValueError):
    """The generated arguments would be rejected by OpenRLHF; the message says which and why."""


def check_args(args: list[str]) -> dict:
    """Parses ``args`` as OpenRLHF would and returns the flat dotted names and values. Where OpenRLHF
    is installed its own parser and post-parse assertions run first (mvp.trainer.openrlhf_args); the
    recorded parser and the checks written here run everywhere, so the result has one shape and the
    checks MVP adds (a remote reward, whole micro batches) hold in every environment."""
    if installed_source() is not None:
        try:
            openrlhf_main_args(args)
        except OpenRLHFRefusedError as exc:
            raise RecipeError(f"OpenRLHF {OPENRLHF_VERSION} refuses the arguments: {exc}") from None
    p = parser()
    namespace, unknown = p.parse_known_args(args)
    if unknown:
        raise RecipeError(f"OpenRLHF {OPENRLHF_VERSION} does not know {unknown}")
    ns = vars(namespace)
    group_based = ns["algo.advantage.estimator"] in ("rloo", "reinforce_baseline", "group_norm", "dr_grpo")
    if group_based and ns["rollout.n_samples_per_prompt"] <= 1:
        raise RecipeError("group_norm (GRPO) needs rollout.n_samples_per_prompt > 1")
    if ns["data.max_images_per_prompt"] > 0 and ns["ds.packing_samples"]:
        raise RecipeError("VLM training does not support --ds.packing_samples")
    if ns["data.max_images_per_prompt"] > 0 and ns["algo.advantage.estimator"] == "gae":
        raise RecipeError("VLM training does not support a critic (gae)")
    if ns["train.batch_size"] % ns["train.micro_batch_size"]:
        raise RecipeError("train.batch_size must be a multiple of train.micro_batch_size")
    if not ns["reward.remote_url"]:
        raise RecipeError("reward.remote_url is required (the MVP reward is remote)")
    return ns


def stage_dataset(storage: Storage, source: str, folder: Path, expires: timedelta = timedelta(days=7)) -> Path:
    """Writes folder/<name>.jsonl: prompts as chat messages with image parts (the model's chat
    template renders its own vision tokens), images as presigned HTTP URLs (or paths as given)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(source.rsplit("/", 1)[-1]).name
    lines = []
    for line in storage.get_bytes(source).decode().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        row["prompt"] = prompt_messages(row["prompt"])
        row["images"] = [_url(storage, uri, expires) for uri in row["images"]]
        lines.append(json.dumps(row))
    target.write_text("\n".join(lines) + "\n")
    return target


def _url(storage: Storage, uri: str, expires: timedelta) -> str:
    if not is_s3(uri):
        return uri
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return storage.client.presigned_get_object(bucket, key, expires=expires)


def submit_command(recipe: Recipe, staged: Path, args: list[str]) -> tuple[list[str], dict]:
    """The `ray job submit` command and its runtime env."""
    runtime_env = {
        "env_vars": {"TOKENIZERS_PARALLELISM": "false", "NCCL_DEBUG": "WARN"},
        # The cluster image provides OpenRLHF with its pins (flash-attn and DeepSpeed need CUDA
        # builds); the job adds only the MVP client, for the reward_func bridge.
        "pip": ["mvp-common", "mvp-reward-service"],
    }
    cmd = [
        "ray",
        "job",
        "submit",
        "--address",
        recipe.cluster.address,
        "--working-dir",
        str(staged),
        "--runtime-env-json",
        json.dumps(runtime_env),
        "--",
        "python3",
        "-m",
        "openrlhf.cli.train_ppo_ray",
        *args,
    ]
    return cmd, runtime_env


def exec_command(args: list[str]) -> list[str]:
    """OpenRLHF run in this environment: the driver of a job already running on the Ray cluster."""
    return ["python3", "-m", "openrlhf.cli.train_ppo_ray", *args]


def launch(recipe: Recipe, storage: Storage, staging: Path, dry_run: bool, mode: str = "ray-submit") -> str:
    """Stages the datasets, checks the arguments, and submits (or prints, with dry_run).

    mode 'ray-submit' ships ``staging`` as the Ray working_dir, so dataset paths are relative to
    it; mode 'exec' runs OpenRLHF here, with absolute paths under ``staging`` (a shared volume)."""
    staged_train = stage_dataset(storage, recipe.dataset, staging)
    staged_eval = stage_dataset(storage, recipe.eval_dataset, staging / "eval") if recipe.eval_dataset else None
    if mode == "exec":
        train_path, eval_path = str(staged_train.resolve()), str(staged_eval.resolve()) if staged_eval else None
    else:
        # Paths relative to the Ray working_dir, which Ray ships to every node.
        train_path, eval_path = staged_train.name, f"eval/{staged_eval.name}" if staged_eval else None
    args = build_args(recipe, train_path, eval_path)
    check_args(args)
    cmd = exec_command(args) if mode == "exec" else submit_command(recipe, staging, args)[0]
    printable = " ".join(shlex.quote(c) for c in cmd)
    if dry_run:
        return printable
    if mode != "exec" and shutil.which("ray") is None:
        raise RuntimeError("`ray` is not installed here; install ray[default] or use --dry-run and submit elsewhere")
    subprocess.run(cmd, check=True)
    return printable
