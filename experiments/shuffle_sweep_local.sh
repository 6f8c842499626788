#!/usr/bin/env bash
# Channel permutation on the embedded default: wanda, ria, esparse x {ria_cp_lsa, esparse (global +
# local block shuffle)}, plus the E-Sparse ablation step (esparse + esparse_global) and RIA's CP
# without LSA, at 2:4 then 4:8 (the RIA Table 4 and E-Sparse ablation shapes; `none` comes from
# score_sweep_local.sh). Resumable like every sweep; extra arguments are Hydra overrides for every run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
for pattern in ${PATTERNS:-2:4 4:8}; do
  COMMON=(pattern="$pattern" logger=none progress=false "$@")
  $PY run.py -m metric=wanda,ria,esparse shuffle=ria_cp_lsa,esparse "${COMMON[@]}"
  $PY run.py -m metric=esparse shuffle=esparse_global "${COMMON[@]}"
  $PY run.py -m metric=ria,wanda shuffle=ria_cp "${COMMON[@]}"
done
