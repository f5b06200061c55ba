# MVP-Train. The two commands a newcomer needs:
#   make run   - install the CPU stack into .venv and run the main job on the embedded default
#   make test  - install everything and run lint + the whole test suite (what CI runs)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Editable installs of every component package, in dependency order.
PACKAGES := proto[store] reward-service synth-service trainer inference
PKG_FILES := $(wildcard */pyproject.toml) requirements-dev.txt
STAMP := $(VENV)/.installed

.PHONY: run test install sysdeps lint proto test-fast bench clean help

help:
	@echo "make run    install and run the whole MVP pipeline on the embedded default"
	@echo "make test   install and run lint + all tests (CI runs this)"
	@echo "make lint   ruff + buf lint + buf breaking"
	@echo "make proto  regenerate the Python stubs from proto/mvp/v1"
	@echo "make bench  run every benchmark under benchmarks/"

$(STAMP): $(PKG_FILES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned: 2.13.0 is the CPU build on local disk; any other spec downloads CUDA.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q $(addprefix -e ./,$(PACKAGES)) -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

sysdeps:
	bash .ci/sysdeps.sh

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iproto --python_out=proto/src --grpc_python_out=proto/src \
		--pyi_out=proto/src proto/mvp/v1/*.proto

lint: $(STAMP) sysdeps
	$(VENV)/bin/ruff check .
	cd proto && buf lint
	@if git rev-parse --verify -q origin/main >/dev/null && git cat-file -e origin/main:proto/buf.yaml 2>/dev/null; then \
		echo "buf breaking against origin/main"; cd proto && buf breaking --against '../.git#ref=origin/main,subdir=proto'; \
	elif git rev-parse --verify -q main >/dev/null && git cat-file -e main:proto/buf.yaml 2>/dev/null; then \
		echo "buf breaking against main"; cd proto && buf breaking --against '../.git#branch=main,subdir=proto'; \
	fi

test: $(STAMP) sysdeps lint
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" -x -q

run: $(STAMP) sysdeps
	$(VENV)/bin/mvp run

bench: $(STAMP) sysdeps
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .mvp .pytest_cache .ruff_cache .hypothesis
