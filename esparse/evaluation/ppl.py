"""Perplexity over non-overlapping windows (the Wanda/SparseGPT/RIA protocol), with its sampling noise.

Each window of ``seqlen`` tokens is scored independently; the loss is the exact mean token NLL
over all predicted tokens (``seqlen - 1`` per window), then exponentiated. The per-window NLLs are
kept, so the record can say how much of a perplexity is the evaluation sample itself: a percentile
bootstrap over windows (``bootstrap_interval``). That interval is the *evaluation* noise only; the
pruning noise (calibration seed, tie-breaking) is measured across runs, by ``analysis``.

The full-vocabulary logits of a batch are never built: the forward stops at the output head
(``esparse.evaluation.head``), and the head runs on ``chunk`` tokens at a time; a check on two
tokens against the model's own logits proves the chunked head equals it before any window is
scored, else the plain path runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from esparse.evaluation.head import final_hidden, head_chunk_tokens, head_logits, head_matches_model

#: the bootstrap protocol, fixed so every record's interval means the same thing
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0
BOOTSTRAP_LEVEL = 0.95


@dataclass(frozen=True)
class Perplexity:
    """exp(mean token NLL) and the summed NLL of every window (each window has ``tokens`` predictions)."""

    value: float
    window_nll: list[float]
    tokens: int

    def interval(self) -> tuple[float, float]:
        return bootstrap_interval(self.window_nll, self.tokens)


def bootstrap_interval(
    window_nll: list[float],
    tokens: int,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = BOOTSTRAP_LEVEL,
) -> tuple[float, float]:
    """Percentile bootstrap of the perplexity over windows: resample windows with replacement,
    recompute exp(sum NLL / tokens), take the central ``level`` of the resampled values."""
    nll = np.asarray(window_nll, dtype=np.float64)
    if nll.size < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, nll.size, size=(samples, nll.size))
    ppl = np.exp(nll[idx].sum(axis=1) / (tokens * nll.size))
    lo, hi = np.quantile(ppl, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _window_nll(model: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
    """Summed NLL of one window's predictions (hidden[:-1] -> targets), ``chunk`` tokens of logits at a time."""
    parts = [F.cross_entropy(head_logits(model, hidden[s : s + chunk]).float(), targets[s : s + chunk], reduction="sum")
             for s in range(0, targets.shape[0], chunk)]  # fmt: skip
    return sum(parts[1:], parts[0])  # float32, as the unchunked loss: one chunk gives the same bits


@torch.no_grad()
def perplexity(
    model: torch.nn.Module,
    windows: torch.Tensor,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    desc: str = "ppl",
    progress: bool = True,
) -> Perplexity:
    """exp(mean NLL) of ``model`` over ``windows`` (n, seqlen) of token ids, with each window's NLL."""
    nll, count, per_window = 0.0, 0, []
    chunked = windows.shape[0] > 0 and head_matches_model(model, windows[:1].to(device))
    chunk = head_chunk_tokens(model.get_output_embeddings().out_features) if chunked else 0
    for start in tqdm(range(0, windows.shape[0], batch_size), desc=desc, disable=not progress, leave=False):
        ids = windows[start : start + batch_size].to(device)
        if chunked:
            hidden = final_hidden(model, ids)
            losses = [_window_nll(model, hidden[i, :-1], ids[i, 1:], chunk) for i in range(ids.shape[0])]
            del hidden
        else:  # one window at a time: a (seqlen-1, vocab) view, not a batch-wide float copy
            logits = model(input_ids=ids, use_cache=False).logits
            losses = [F.cross_entropy(logits[i, :-1].float(), ids[i, 1:], reduction="sum") for i in range(ids.shape[0])]
            del logits
        loss = sum(losses)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: non-finite loss in windows {start}..{start + ids.shape[0] - 1}")
        nll += float(loss)
        per_window.extend(float(x) for x in losses)
        count += ids[:, 1:].numel()
    return Perplexity(math.exp(nll / count), per_window, windows.shape[1] - 1)
