"""Streaming per-input-channel statistics of a linear layer's calibration inputs.

Why streaming: a LLaMA-7B block sees 128 × 2048 tokens; keeping them per linear layer would cost
O(tokens × channels). Here memory is O(channels × bins) (plus channels² only when a Hessian is asked
for), whatever the number of tokens.

Entropy needs each channel's own [min, max] before it can bin, so it takes **two passes** over the same
inputs: pass 1 accumulates sums of squares, min/max (and the Hessian); ``finalize()`` freezes the
ranges; pass 2 fills a ``channels × bins`` histogram; a second ``finalize()`` turns it into entropy.
:meth:`ChannelStats.from_inputs` runs the whole protocol for inputs held in memory.
The sequential pruning loop keeps the block's inputs anyway, so replaying them is cheap and exact,
whereas a one-pass adaptive histogram would only approximate the paper's binning.

Conventions (docs/method.md §2, the papers' reference code):
- a 2-D ``x`` (tokens, c) is one calibration sample; a 3-D ``x`` (batch, tokens, c) is ``batch`` samples;
- ``norm_j = sqrt(sum_tokens x_j² / nsamples)`` (Wanda's ``scaler_row``);
- ``hessian = 2 / nsamples · Σ_tokens x xᵀ`` (SparseGPT's ``add_batch``);
- with ``moments=True`` (DSnoT, docs/refine.md): ``mean_j`` over all tokens, and ``var_j`` the mean over
  samples of each sample's own (population) variance over its tokens (DSnoT's per-sample ``add_batch``);
- with ``absmean=True`` (AWQ's activation scale, docs/quant.md): ``absmean_j = Σ_tokens |x_j| / ntokens``;
- ``entropy_j = -Σ_k p_k ln p_k`` over ``bins`` equal bins of ``[min_j, max_j]``, natural log; a value
  equal to ``max_j`` falls in the last bin; a zero-range channel has entropy 0.
Sums are accumulated in float64 so results hardly depend on how the tokens were split into calls.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from esparse.finite import all_finite

__all__ = ["ChannelStats", "DEFAULT_BINS", "input_summary"]

#: entropy histogram bins of a ChannelStats built without a config (a run reads ``metric.bins``;
#: equal to conf/metric/esparse.yaml, see :func:`esparse.scores.library_defaults`)
DEFAULT_BINS = 100

# elements binned at once in pass 2: bounds the temporary index tensors (~128 MiB of int64)
_CHUNK_ELEMENTS = 1 << 24

_COLLECT, _HISTOGRAM, _DONE = 0, 1, 2


class NonFiniteInputs(ValueError, FloatingPointError):
    """Calibration inputs hold a NaN or an infinity (a ValueError to a ChannelStats user, a
    FloatingPointError to a prune, which names the linear)."""


class ChannelStats:
    """Per-input-channel norm, range, entropy and (optionally) Hessian, accumulated over calls.

    Protocol: ``update(x)`` for every sample, ``finalize()``; if ``needs_second_pass``, ``update(x)``
    again for the same samples and ``finalize()`` once more. ``norm``/``hessian``/``min``/``max`` are
    readable after the first ``finalize()``, ``entropy`` after the last one. With the inputs in
    memory, ``ChannelStats.from_inputs(xs)`` does all of it.
    """

    def __init__(
        self,
        in_features: int,
        bins: int = DEFAULT_BINS,
        entropy: bool = True,
        hessian: bool = False,
        device: torch.device | str | None = None,
        moments: bool = False,
        absmean: bool = False,
    ) -> None:
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"in_features must be a positive int, got {in_features!r}")
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be a positive int, got {bins!r}")
        self.in_features = in_features
        self.bins = bins
        self.track_entropy = bool(entropy)
        self.track_hessian = bool(hessian)
        self.track_moments = bool(moments)
        self.track_absmean = bool(absmean)
        self.device = torch.device(device) if device is not None else None
        self.nsamples = 0
        self.ntokens = 0
        self._phase = _COLLECT
        self._pass2_tokens = 0
        self._sumsq: torch.Tensor | None = None
        self._min: torch.Tensor | None = None
        self._max: torch.Tensor | None = None
        self._hess: torch.Tensor | None = None
        self._sum: torch.Tensor | None = None
        self._varsum: torch.Tensor | None = None
        self._abssum: torch.Tensor | None = None
        self._hist: torch.Tensor | None = None
        self._entropy: torch.Tensor | None = None

    @classmethod
    def from_inputs(
        cls,
        xs: Iterable[torch.Tensor] | torch.Tensor,
        bins: int = DEFAULT_BINS,
        entropy: bool = True,
        hessian: bool = False,
        device: torch.device | str | None = None,
        moments: bool = False,
        absmean: bool = False,
    ) -> ChannelStats:
        """Finalized statistics of calibration inputs held in memory, both passes in one call.

        ``xs`` is a list (or any iterable, read once and kept) of batches, each 2-D ``tokens × c``
        (one sample) or 3-D ``batch × tokens × c``; a single tensor is one batch. ``in_features`` is
        the batches' last dimension. The result equals ``update`` over ``xs``, ``finalize()``, and,
        when the entropy is tracked, ``update`` over ``xs`` again and ``finalize()``.
        """
        batches = [xs] if isinstance(xs, torch.Tensor) else list(xs)
        if not batches:
            raise ValueError("from_inputs() needs at least one batch of calibration inputs")
        first = batches[0]
        if not isinstance(first, torch.Tensor) or first.dim() == 0:
            raise TypeError(f"from_inputs() expects tensors, got {type(first).__name__}")
        stats = cls(
            int(first.shape[-1]), bins=bins, entropy=entropy, hessian=hessian, device=device, moments=moments,
            absmean=absmean,
        )  # fmt: skip
        while not stats.finalized:  # pass 1, then (entropy only) the histogram replay
            for x in batches:
                stats.update(x)
            stats.finalize()
        return stats

    # ------------------------------------------------------------------ accumulation
    def update(self, x: torch.Tensor) -> None:
        """Add one sample (2-D ``tokens × c``) or a batch of samples (3-D ``batch × tokens × c``)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"update() expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() not in (2, 3):
            raise ValueError(
                f"update() expects a 2-D (tokens, {self.in_features}) or 3-D (batch, tokens, "
                f"{self.in_features}) tensor, got shape {tuple(x.shape)}"
            )
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"update() got inputs of width {x.shape[-1]} (shape {tuple(x.shape)}), "
                f"expected in_features={self.in_features}"
            )
        if self._phase == _DONE:
            raise RuntimeError("ChannelStats is finalized; update() after the last finalize() is a bug")
        if self.device is None:
            self.device = x.device
        nsamples = 1 if x.dim() == 2 else x.shape[0]
        flat = x.detach().reshape(-1, self.in_features).to(self.device)
        if flat.numel() and not all_finite(flat):
            bad = (~torch.isfinite(flat)).any(dim=0).nonzero().flatten()[:5].tolist()
            raise NonFiniteInputs(f"calibration inputs contain NaN/Inf (first channels affected: {bad})")
        if self._phase == _COLLECT:
            self._collect(flat, nsamples)
        else:
            self._histogram(flat)

    def _collect(self, flat: torch.Tensor, nsamples: int) -> None:
        c, dev = self.in_features, self.device
        if self._sumsq is None:
            self._sumsq = torch.zeros(c, dtype=torch.float64, device=dev)
            self._min = torch.full((c,), float("inf"), dtype=torch.float64, device=dev)
            self._max = torch.full((c,), float("-inf"), dtype=torch.float64, device=dev)
            if self.track_hessian:
                self._hess = torch.zeros(c, c, dtype=torch.float64, device=dev)
            if self.track_moments:
                self._sum = torch.zeros(c, dtype=torch.float64, device=dev)
                self._varsum = torch.zeros(c, dtype=torch.float64, device=dev)
            if self.track_absmean:
                self._abssum = torch.zeros(c, dtype=torch.float64, device=dev)
        self.nsamples += nsamples
        self.ntokens += flat.shape[0]
        if flat.shape[0] == 0:
            return
        # min/max are exact in the input dtype; the float64 copy for the sums is made chunk by chunk
        torch.minimum(self._min, flat.amin(dim=0).to(torch.float64), out=self._min)
        torch.maximum(self._max, flat.amax(dim=0).to(torch.float64), out=self._max)
        for chunk in self._chunks(flat):
            if self._sum is not None:
                self._sum += chunk.sum(dim=0)
            if self._abssum is not None:
                self._abssum += chunk.abs().sum(dim=0)
            self._sumsq += chunk.square_().sum(dim=0)  # last: squares the chunk (our copy) in place
        if self._varsum is not None:  # each sample's variance about its own mean, weighted by its tokens
            for sample in flat.reshape(nsamples, -1, self.in_features):
                x64 = sample.to(torch.float64)
                self._varsum += x64.var(dim=0, unbiased=False) * x64.shape[0]
        if self._hess is not None:
            # fp32 product (as SparseGPT, fast on any device), float64 running sum across calls
            x32 = flat.to(torch.float32)
            self._hess += (x32.T @ x32).to(torch.float64)

    def _histogram(self, flat: torch.Tensor) -> None:
        c, bins = self.in_features, self.bins
        self._pass2_tokens += flat.shape[0]
        lo, width = self._min, self._max - self._min
        # zero-range channels: every value goes to bin 0 (scale 0), giving entropy 0
        scale = torch.where(width > 0, bins / torch.where(width > 0, width, 1.0), 0.0)
        # each channel's first bin in the flat (c * bins) histogram; float64 holds these integers exactly
        offsets = torch.arange(c, device=self.device, dtype=torch.float64) * bins
        for chunk in self._chunks(flat):
            # floor((x - min) / width * bins); clamping puts x == max (and replay jitter) in range. In
            # place on the chunk (our copy): the same float operations, half the time of temporaries
            idx = chunk.sub_(lo).mul_(scale).floor_().clamp_(0, bins - 1).add_(offsets).to(torch.int64)
            self._hist += torch.bincount(idx.view(-1), minlength=c * bins).view(c, bins)

    def _chunks(self, flat: torch.Tensor):
        """float64 row chunks of ``flat``, each a copy (callers work on it in place): bounds
        temporaries to ~_CHUNK_ELEMENTS elements."""
        rows = max(1, _CHUNK_ELEMENTS // self.in_features)
        for start in range(0, flat.shape[0], rows):
            yield flat[start : start + rows].to(torch.float64, copy=True)

    def finalize(self) -> None:
        """End the current pass: freeze ranges after pass 1, compute entropy after pass 2."""
        if self._phase == _DONE:
            return
        if self._phase == _COLLECT:
            if self.nsamples == 0 or self.ntokens == 0:
                raise ValueError("ChannelStats.finalize() called before any tokens were seen")
            if self.track_entropy:
                self._hist = torch.zeros(self.in_features, self.bins, dtype=torch.int64, device=self.device)
                self._phase = _HISTOGRAM
            else:
                self._phase = _DONE
            return
        if self._pass2_tokens != self.ntokens:
            raise ValueError(
                f"second pass saw {self._pass2_tokens} tokens but the first saw {self.ntokens}; "
                "both passes must replay the same calibration inputs"
            )
        p = self._hist.to(torch.float64) / self.ntokens
        plogp = torch.where(p > 0, p * torch.log(torch.where(p > 0, p, 1.0)), 0.0)
        self._entropy = -plogp.sum(dim=1)
        self._phase = _DONE

    # ------------------------------------------------------------------ results
    @property
    def needs_second_pass(self) -> bool:
        """True while the entropy histogram still has to be filled by a replay of the inputs."""
        return self.track_entropy and self._phase != _DONE

    @property
    def finalized(self) -> bool:
        return self._phase == _DONE

    def _require_pass1(self, what: str) -> None:
        if self._phase == _COLLECT:
            raise RuntimeError(f"ChannelStats.{what} is not available before finalize()")

    @property
    def norm(self) -> torch.Tensor:
        """(c,) float32: sqrt(Σ_tokens x² / nsamples), Wanda's ‖X_j‖₂."""
        self._require_pass1("norm")
        return (self._sumsq / self.nsamples).sqrt().to(torch.float32)

    @property
    def min(self) -> torch.Tensor:
        self._require_pass1("min")
        return self._min.to(torch.float32)

    @property
    def max(self) -> torch.Tensor:
        self._require_pass1("max")
        return self._max.to(torch.float32)

    @property
    def hessian(self) -> torch.Tensor:
        """(c, c) float32: 2/nsamples · Σ x xᵀ (SparseGPT's H)."""
        if not self.track_hessian:
            raise RuntimeError("ChannelStats was built with hessian=False; no Hessian was accumulated")
        self._require_pass1("hessian")
        return (self._hess * (2.0 / self.nsamples)).to(torch.float32)

    def _require_moments(self, what: str) -> None:
        if not self.track_moments:
            raise RuntimeError(f"ChannelStats was built with moments=False; no {what} was accumulated")
        self._require_pass1(what)

    @property
    def mean(self) -> torch.Tensor:
        """(c,) float32: Σ_tokens x / ntokens, with ``moments=True``."""
        self._require_moments("mean")
        return (self._sum / self.ntokens).to(torch.float32)

    @property
    def var(self) -> torch.Tensor:
        """(c,) float32: the samples' mean within-sample variance (population), with ``moments=True``."""
        self._require_moments("var")
        return (self._varsum / self.ntokens).to(torch.float32)

    @property
    def absmean(self) -> torch.Tensor:
        """(c,) float32: Σ_tokens |x| / ntokens (AWQ's activation scale), with ``absmean=True``."""
        if not self.track_absmean:
            raise RuntimeError("ChannelStats was built with absmean=False; no mean |x| was accumulated")
        self._require_pass1("absmean")
        return (self._abssum / self.ntokens).to(torch.float32)

    @property
    def histogram(self) -> torch.Tensor:
        """(c, bins) int64 counts of pass 2 (for figures and checks)."""
        if not self.track_entropy:
            raise RuntimeError("ChannelStats was built with entropy=False; no histogram was collected")
        if self._phase != _DONE:
            raise RuntimeError("ChannelStats.histogram is not available before the second finalize()")
        return self._hist.clone()

    @property
    def entropy(self) -> torch.Tensor:
        """(c,) float32: -Σ p ln p over `bins` equal bins of each channel's [min, max]."""
        if not self.track_entropy:
            raise RuntimeError("ChannelStats was built with entropy=False; no entropy was collected")
        if self._phase != _DONE:
            raise RuntimeError(
                "ChannelStats.entropy is not available yet: call finalize(), replay the inputs "
                "through update() (needs_second_pass), then finalize() again, or build the stats "
                "in one call with ChannelStats.from_inputs(xs)"
            )
        return self._entropy.to(torch.float32)

    def __repr__(self) -> str:
        phase = {_COLLECT: "collecting", _HISTOGRAM: "histogram pass", _DONE: "done"}[self._phase]
        return (
            f"ChannelStats(in_features={self.in_features}, bins={self.bins}, entropy={self.track_entropy}, "
            f"hessian={self.track_hessian}, nsamples={self.nsamples}, ntokens={self.ntokens}, {phase})"
        )


def input_summary(stats: ChannelStats) -> dict[str, float]:
    """Means over input channels of what the scores read, from a finalized pass (no extra forward).

    ``x_norm_wanda_mean`` under Wanda's convention (``norm``), ``x_norm_l2_mean`` under E-Sparse's
    text (sqrt(Σx²) over all tokens = sqrt(nsamples) × Wanda's) and, when the entropy was collected,
    ``entropy_mean``: E-Sparse's α = 70 balances α·H against ‖X‖ only where these ratios are ≈ 70,
    and ``alpha=auto`` is their ratio per layer, so a record shows where either one holds.
    """
    wanda = float(stats.norm.to(torch.float64).mean())
    out = {"x_norm_wanda_mean": wanda, "x_norm_l2_mean": wanda * math.sqrt(stats.nsamples)}
    if stats.track_entropy:
        out["entropy_mean"] = float(stats.entropy.to(torch.float64).mean())
    return out
