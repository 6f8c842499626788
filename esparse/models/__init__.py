"""Models: loading (bundled GGUF / hub / local dir) and family adapters."""

from esparse.models.adapters import ADAPTERS, Adapter, block_output, capture_block_kwargs, get_adapter
from esparse.models.loading import ModelNotFoundError, default_cache_dir, load_model

__all__ = [
    "ADAPTERS",
    "Adapter",
    "ModelNotFoundError",
    "block_output",
    "capture_block_kwargs",
    "default_cache_dir",
    "get_adapter",
    "load_model",
]
