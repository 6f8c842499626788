#!/usr/bin/env bash
# make verify: re-run reference configs into a fresh temporary results dir, then compare every record
# made there with the committed reference record of the same config (python -m analysis drift --strict).
# Each argument is one run's Hydra overrides as one string ("" = the default run); exit 1 on drift, or when
# a re-run config has no reference record (its config hash moved).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
[ $# -gt 0 ] || set -- ""
tmp="$(mktemp -d "${TMPDIR:-/tmp}/esparse-verify.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
for overrides in "$@"; do
  echo "== verify: python run.py ${overrides:-(default)}"
  # shellcheck disable=SC2086  # one string of overrides, split on purpose
  "$PY" run.py $overrides results_dir="$tmp" logger=none progress=false
done
echo "== drift (re-ran $# config(s) in $((SECONDS - start)) s)"
"$PY" -m analysis drift --runs "$tmp/runs" --reference results/reference/runs --strict ${DRIFT_ARGS:-}
