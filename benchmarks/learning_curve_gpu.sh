#!/usr/bin/env bash
# The learning proof at level 2 with its control on one GPU, sized to finish in under 9 minutes of
# wall time (issue #33 item 10): the same benchmarks/learning_curve.py the CPU proof runs (its test,
# tests/benchmarks/test_learning_curve.py, runs this path on the CPU), with the device picked once.
#
#   bash benchmarks/learning_curve_gpu.sh [more learning_curve.py flags]
#
# Budget (seconds, on one H100/H200-class GPU and 16 cores): data ~90 (videos encoded in one process
# per core), warm start ~40, three held-out evaluations of 256 samples ~30 each, GRPO 2 x BUDGET_S.
# Override with BUDGET_S, WARM_EPOCHS, LEVEL, OUT. The last line is the benchmark's JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
exec "$PY" benchmarks/learning_curve.py \
  --level "${LEVEL:-2}" \
  --device cuda \
  --budget-s "${BUDGET_S:-150}" \
  --warm-start-epochs "${WARM_EPOCHS:-2}" \
  --out "${OUT:-.mvp-learning-gpu}" \
  "$@"
