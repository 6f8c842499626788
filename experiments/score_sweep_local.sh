#!/usr/bin/env bash
# Every pruning score on the embedded default (SmolLM2-135M, bundled corpus, 32x512 calibration,
# 32x512 held-out eval) at 2:4, then 4:8: the local counterpart of E-Sparse T1 / RIA T2 / RIA T8.
# Records land in results/runs/ (resumable: finished configs are skipped, so re-run to continue);
# extra arguments are Hydra overrides for every run (we made the committed reference records with
# `experiments/score_sweep_local.sh results_dir=results/reference`).
# E-Sparse runs three ways: alpha=auto (our default), the paper's alpha=70, and form=alpha_norm with 70
# (alpha_norm with auto ranks exactly like alpha_entropy with auto: H + (mH/mX)X = (mH/mX)((mX/mH)H + X)).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
for pattern in 2:4 4:8; do
  COMMON=(pattern="$pattern" logger=none progress=false "$@")
  $PY run.py -m metric=wanda,ria,sparsegpt,magnitude,esparse "${COMMON[@]}"
  $PY run.py -m metric=esparse metric.alpha=70.0 "${COMMON[@]}"
  $PY run.py -m metric=wanda,ria metric.reconstruct=true "${COMMON[@]}"
  $PY run.py -m metric=ri "${COMMON[@]}"
  $PY run.py -m metric=esparse metric.form=alpha_norm metric.alpha=70.0 "${COMMON[@]}"
done
