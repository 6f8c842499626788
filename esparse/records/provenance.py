"""Where a number came from: the one environment collector every record and bench uses.

A float result depends on more than the code: the package versions (the lock), the CPU's vector
instructions that torch dispatches to, the BLAS, the thread count (reduction order), the GPU and its
driver. All of it is written into every record so that a re-run that disagrees can be explained
(``python -m analysis drift``) and a bit-exact check knows when it may demand bit-exactness.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

#: the repository's lock: exact versions of the whole stack (scripts/lock.sh writes it)
LOCK_FILE = Path(__file__).resolve().parents[2] / "requirements.lock"
#: packages whose version is copied into every record in full (the lock hash covers the rest)
KEY_PACKAGES = ("torch", "transformers", "lm-eval", "datasets", "scipy", "numpy", "hydra-core", "esparse")
#: CPU flags that change which kernels torch/MKL/oneDNN run, hence the float results
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve",
)  # fmt: skip
#: environment variables that change float results or the kernels chosen
NUMERIC_ENV = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS",
    "MKL_CBWR", "OPENBLAS_CORETYPE", "DNNL_MAX_CPU_ISA", "CUBLAS_WORKSPACE_CONFIG",
)  # fmt: skip
#: distributions that live in a venv without being part of the stack
NOT_LOCKED = {"esparse", "pip", "setuptools", "wheel", "uv"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK_FILE) -> dict[str, str]:
    """{normalised name: version} of a requirements lock (``name==version`` lines)."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_norm(name.split("[", 1)[0])] = version.split(";", 1)[0].strip()
    return pins


def installed() -> dict[str, str]:
    """{normalised name: version} of every distribution importable here."""
    return {_norm(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def lock_differences(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    """Every way the installed set differs from the lock, one line each (empty: installed == lock).

    The torch line compares the release only: a CUDA host installs the lock's version in its CUDA build.
    """
    out = []
    for name, want in sorted(pins.items()):
        got = have.get(name)
        if name == "torch" and got is not None and got.split("+")[0] == want.split("+")[0]:
            continue
        if got != want:
            out.append(f"{name}: lock {want}, installed {got or 'missing'}")
    for name in sorted(set(have) - set(pins) - NOT_LOCKED):
        if not name.startswith("nvidia-") and name != "triton":  # torch's CUDA build brings these
            out.append(f"{name}: not in lock, installed {have[name]}")
    return out


@lru_cache(maxsize=1)
def lock_info() -> dict[str, Any]:
    """The lock's sha256 (12 hex) and whether this interpreter's packages are exactly it."""
    if not LOCK_FILE.is_file():  # installed from a wheel, outside the repository
        return {"file": None, "sha256": None, "matches_installed": None, "differences": []}
    diffs = lock_differences(read_lock(), installed())
    return {
        "file": LOCK_FILE.name,
        "sha256": hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()[:12],
        "matches_installed": not diffs,
        "differences": diffs[:20],
    }


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """CPU model, the numerically relevant ISA flags, and the kernel level torch dispatches to."""
    import torch

    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        model = m.group(1).strip() if m else model
        m = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M)
        flags = set(m.group(1).split()) if m else set()
    except OSError:
        pass
    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    return {
        "model": model,
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "isa": [f for f in ISA_FLAGS if f in flags],
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": blas.group(1) if blas else None,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
    }


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def gpu_info(device: str) -> dict[str, Any] | None:
    """Name, compute capability, driver, CUDA, cuDNN and cuSPARSELt of the GPU a run used; None on CPU."""
    import torch

    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return None
    dev = torch.device(device)
    props = torch.cuda.get_device_properties(dev)
    return {
        "name": props.name,
        "capability": f"{props.major}.{props.minor}",
        "memory_gb": round(props.total_memory / 1e9, 1),
        "driver": _nvidia_driver(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cusparselt": torch.backends.cusparselt.version() if torch.backends.cusparselt.is_available() else None,
    }


def _git_sha() -> str | None:
    root = Path(__file__).parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True,
            timeout=5,
        ).stdout.strip()  # fmt: skip
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_kind(env: Mapping[str, Any]) -> str | None:
    """What made a record, as far as its floats go: the GPU's name, or the CPU's model and the kernel
    level torch dispatched to (analysis.records.machine reads records by the same rule). ``None`` for
    a record made before the CPU was recorded."""
    gpu, cpu = env.get("gpu"), env.get("cpu")
    if isinstance(gpu, Mapping) and gpu.get("name"):
        return str(gpu["name"])
    if isinstance(cpu, Mapping) and cpu.get("model"):
        return f"{cpu['model']} ({cpu.get('torch_capability') or 'unknown kernel level'})"
    return None


def environment(device: str = "cpu") -> dict[str, Any]:
    """Everything about this process that can move a float: one dict, the same in every record."""
    import torch

    versions = {}
    for pkg in KEY_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    gpu = gpu_info(device)
    return {
        "versions": versions,
        "lock": lock_info(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "device": gpu["name"] if gpu else str(device),
        "gpu": gpu,
        "cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "numeric_env": {k: os.environ[k] for k in NUMERIC_ENV if k in os.environ},
        "git_sha": _git_sha(),
        "host": platform.node(),
    }
