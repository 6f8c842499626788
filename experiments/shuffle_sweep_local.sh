#!/usr/bin/env bash
# Channel permutation on the embedded default: the full grid of the RIA Table 4 / E-Sparse ablation,
# scores {wanda, ria, esparse} x shuffles {esparse_global, esparse (global + local block shuffle),
# ria_cp, ria_cp_lsa}, at 2:4 then 4:8. The `none` column comes from score_sweep_local.sh.
# Resumable like every sweep (finished records are skipped); extra arguments are Hydra overrides
# for every run, e.g. `results_dir=results/reference`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
for pattern in ${PATTERNS:-2:4 4:8}; do
  $PY run.py -m metric=wanda,ria,esparse shuffle=esparse_global,esparse,ria_cp,ria_cp_lsa \
    pattern="$pattern" logger=none progress=false "$@"
done
