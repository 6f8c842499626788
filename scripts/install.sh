#!/usr/bin/env bash
# Create .venv/ and install exactly requirements.lock, then esparse itself (editable, no dependencies).
# Works on a machine with neither a venv nor uv, offline except for the package registries:
#  - uv (pinned, installed into the venv by pip) syncs the lock in seconds: exactly its packages, extras removed;
#    without it (or with ESPARSE_NO_UV=1) plain pip installs the same lines with --no-deps.
#  - torch: on a host without an NVIDIA GPU, the lock's CPU build (a local torch-*+cpu wheel from pip's
#    find-links when present, else PyTorch's CPU index). On a CUDA host every other line stays and torch of
#    the same version comes from PyPI with its CUDA libraries (docs/reproducibility.md).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY_BOOT="${PYTHON:-python3}"
LOCK="requirements.lock"
UV_VERSION="0.13.9"
TORCH_LINE="$(grep -E '^torch==' "$LOCK")"
TORCH_VERSION="${TORCH_LINE#torch==}"
TORCH_VERSION="${TORCH_VERSION%+cpu}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY_BOOT" -m venv "$VENV"
fi
PY="$VENV/bin/python"
[ -n "${ESPARSE_NO_UV:-}" ] || "$PY" -m pip install -q "uv==${UV_VERSION}" >/dev/null 2>&1 || true
UV=()
[ -x "$VENV/bin/uv" ] && UV=("$VENV/bin/uv" pip)

reqs="$LOCK"
TORCH_ARGS=()
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  CUDA_HOST=1
  reqs="$(mktemp)"
  trap 'rm -f "$reqs"' EXIT
  grep -vE '^torch==' "$LOCK" >"$reqs"
else
  CUDA_HOST=0
  FIND_LINKS="${PIP_FIND_LINKS:-$("$PY" -m pip config get global.find-links 2>/dev/null || true)}"
  for d in $FIND_LINKS; do
    d="${d#file://}"
    if ls "$d"/torch-"${TORCH_VERSION}"+cpu-*.whl >/dev/null 2>&1; then TORCH_ARGS=(--find-links "$d"); fi
  done
  if [ ${#TORCH_ARGS[@]} -eq 0 ]; then
    TORCH_ARGS=(--extra-index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}")
    [ ${#UV[@]} -gt 0 ] && TORCH_ARGS+=(--index-strategy unsafe-best-match)
  fi
fi

if [ ${#UV[@]} -gt 0 ]; then
  if [ "$CUDA_HOST" = 1 ]; then  # install, not sync: a sync without torch would remove the CUDA build each time
    "${UV[@]}" install --python "$PY" --no-deps -r "$reqs"
    "${UV[@]}" install --python "$PY" "torch==${TORCH_VERSION}"
  else
    "${UV[@]}" sync --python "$PY" "${TORCH_ARGS[@]}" "$reqs"
  fi
  "${UV[@]}" install --python "$PY" --no-deps -e .
else
  "$PY" -m pip install -q --no-deps "${TORCH_ARGS[@]}" -r "$reqs"
  [ "$CUDA_HOST" = 1 ] && "$PY" -m pip install -q "torch==${TORCH_VERSION}"
  "$PY" -m pip install -q --no-deps -e .
fi
touch "$VENV/.installed"
echo "esparse installed in $VENV from $LOCK (sha256 $(sha256sum "$LOCK" | cut -c1-12); torch $("$PY" -c 'import torch; print(torch.__version__)'))"
