"""Perplexity over non-overlapping windows (the Wanda/SparseGPT/RIA protocol).

Each window of ``seqlen`` tokens is scored independently; the loss is the exact mean token NLL
over all predicted tokens (``seqlen - 1`` per window), then exponentiated.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


@torch.no_grad()
def perplexity(
    model: torch.nn.Module,
    windows: torch.Tensor,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    desc: str = "ppl",
    progress: bool = True,
) -> float:
    """exp(mean NLL) of ``model`` over ``windows`` (n, seqlen) of token ids."""
    nll, count = 0.0, 0
    for start in tqdm(range(0, windows.shape[0], batch_size), desc=desc, disable=not progress, leave=False):
        ids = windows[start : start + batch_size].to(device)
        logits = model(input_ids=ids, use_cache=False).logits
        # one window at a time: a contiguous (seqlen-1, vocab) view instead of a batch-wide float
        # copy plus its log-softmax (~0.8 GB extra at 4 x 512 x 49k vocab in float32)
        loss = sum(F.cross_entropy(logits[i, :-1].float(), ids[i, 1:], reduction="sum") for i in range(ids.shape[0]))
        del logits
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: non-finite loss in windows {start}..{start + ids.shape[0] - 1}")
        nll += float(loss)
        count += ids[:, 1:].numel()
    return math.exp(nll / count)
