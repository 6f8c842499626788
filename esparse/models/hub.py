"""Is the Hugging Face hub usable now, and what does its local cache already hold?

Checked before any heavy work so an offline machine fails (or switches to the cache) in seconds:
transformers and datasets otherwise retry each file for about a minute before giving up.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse


def offline_set() -> bool:
    """True when the user switched the hub off (``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``)."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_DATASETS_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return bool(constants.HF_HUB_OFFLINE or flag)


def reachable(timeout: float = 3.0) -> bool:
    """One TCP connect to the hub endpoint; DNS failure or timeout means unreachable."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def unusable() -> str | None:
    """Why the hub cannot be used now (a phrase for an error message), or None if it can."""
    if offline_set():
        return "switched off (HF_HUB_OFFLINE is set)"
    if not reachable():
        from huggingface_hub import constants

        return f"unreachable (no connection to {constants.ENDPOINT} within 3 s)"
    return None


def cached_snapshot(repo_id: str) -> Path | None:
    """The local snapshot dir of a model repo in the hub cache (holding its config.json), if any."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, "config.json")
    return Path(hit).parent if isinstance(hit, str) else None


@contextlib.contextmanager
def offline(enabled: bool) -> Iterator[None]:
    """Turn on huggingface_hub's and datasets' offline switches for the block, then restore them.

    Setting the env vars alone is not enough: both libraries read them once at import.
    """
    if not enabled:
        yield
        return
    import datasets
    from huggingface_hub import constants

    saved = (constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE)
    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    os.environ.update({k: "1" for k in saved_env})
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE = saved
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
