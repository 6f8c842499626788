"""Bench output: the environment a bench ran in and the file name of its device."""

from __future__ import annotations

from typing import Any

import torch

from esparse import tracking
from esparse.bench.kernels import device_name


def bench_env(device: str | torch.device) -> dict[str, Any]:
    """Versions and device for a bench record."""
    import platform

    device = torch.device(device)
    env: dict[str, Any] = {
        "device": device_name(device), "device_type": device.type, "torch": torch.__version__,
        "cuda": torch.version.cuda, "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
    }  # fmt: skip
    if device.type == "cuda" and torch.cuda.is_available():
        cap = torch.cuda.get_device_capability(device)
        env["capability"] = f"{cap[0]}.{cap[1]}"
        env["cusparselt"] = torch.backends.cusparselt.version() if torch.backends.cusparselt.is_available() else None
    return env


def device_slug(name: str) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower())
    return "-".join(p for p in slug.split("-") if p) or "unknown"


write_json_atomic = tracking.write_json_atomic  # one atomic writer for the whole project
