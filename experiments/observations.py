"""Activation statistics and retained degrees of a few real layers of the default model → small JSON.

Why: the observation figures (E-Sparse Fig. 2, per-channel entropy, RIA Fig. 5/6) need the
per-channel statistics of real activations and the masks the scores produce on real weights. Those
take a model load and a forward pass; the figures must build in seconds from committed data, so this
script writes them once to ``results/observations/<model>.json`` (compact: rounded floats, < 1 MB),
a bench record of kind ``observations`` (``esparse.bench.schema``: one row per layer), and
``python -m analysis figures`` only reads that file.

What it records, for the inputs of ``q_proj`` (shared by q/k/v) and ``down_proj`` of a few blocks of
the *dense* model (calibration windows from the bundled corpus, the same sampling as pruning):
- per input channel: ``norm`` (Wanda's convention, ``esparse.stats.ChannelStats``), ``entropy``
  (100 bins over the channel's own range, ChannelStats), ``mean`` and ``std`` over all tokens
  (float64 sums here), ``min``/``max``;
- per input channel, the *retained degree* (how many output rows keep that input's weight) under
  Wanda / RIA scores with 50 % unstructured (per row), 2:4, and 2:4 after RIA's channel permutation
  (``ria_cp_lsa``; degrees are reported in the original channel order), plus each mask's retained
  share of the total score.

    .venv/bin/python experiments/observations.py                    # default: blocks 0 15 29, 8 x 512
    .venv/bin/python experiments/observations.py --blocks 0 29 --nsamples 4 --out /tmp/obs.json
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from esparse.bench import write_bench_record

ROOT = Path(__file__).resolve().parents[1]
LINEARS = ("self_attn.q_proj", "mlp.down_proj")
#: (score name, pattern label) pairs whose masks are recorded
MASKS = (
    ("wanda", "unstructured_50"),
    ("wanda", "2:4"),
    ("ria", "unstructured_50"),
    ("ria", "2:4"),
    ("ria", "2:4+ria_cp_lsa"),
)


def compose_config(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The project's resolved Hydra config (model, paths, calibration) without running anything."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def rounded(x: torch.Tensor, digits: int = 4) -> list[float]:
    """Floats with ``digits`` significant digits: the figures need shape, not the 8th decimal."""
    out = []
    for v in x.detach().double().tolist():
        if v == 0.0 or not math.isfinite(v):
            out.append(0.0 if v == 0.0 else v)
        else:
            out.append(round(v, digits - 1 - int(math.floor(math.log10(abs(v))))))
    return out


def channel_moments(xs: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-channel mean and (population) std over every token of every sample, in float64."""
    n = sum(x.reshape(-1, x.shape[-1]).shape[0] for x in xs)
    s = sum(x.reshape(-1, x.shape[-1]).double().sum(0) for x in xs)
    ss = sum(x.reshape(-1, x.shape[-1]).double().square().sum(0) for x in xs)
    mean = s / n
    var = (ss / n - mean.square()).clamp_min(0.0)
    return {"mean": mean, "std": var.sqrt(), "tokens": torch.tensor(n)}


def degrees(score: torch.Tensor, kind: str) -> tuple[torch.Tensor, float]:
    """Kept weights per input channel (original order) and the kept share of the total score."""
    from esparse import masks, permutation

    if kind == "unstructured_50":
        keep = masks.unstructured_mask(score, 0.5)
    elif kind == "2:4":
        keep = masks.nm_mask(score, 2, 4)
    elif kind == "2:4+ria_cp_lsa":
        perm = permutation.get("ria_cp_lsa")(score, 2, 4)
        keep_p = masks.nm_mask(score[:, perm], 2, 4)
        keep = torch.empty_like(keep_p)
        keep[:, perm] = keep_p  # column k of the permuted matrix is original channel perm[k]
    else:
        raise ValueError(f"unknown mask kind {kind!r}; expected unstructured_50, 2:4 or 2:4+ria_cp_lsa")
    total = float(score.double().sum())
    kept = float((score.double() * keep).sum())
    return keep.sum(0), (kept / total if total > 0 else 0.0)


def layer_record(
    name: str,
    block: int,
    linear: str,
    weight: torch.Tensor,
    xs: list[torch.Tensor],
    scores_out: dict[str, torch.Tensor] | None = None,
) -> dict:
    """Everything the figures need about one linear layer and its calibration inputs; with
    ``scores_out``, the layer's RIA score is put there too (real matrices for bench_permutation)."""
    from esparse import scores
    from esparse.stats import ChannelStats

    c = weight.shape[1]
    st = ChannelStats(c, bins=100)
    for x in xs:
        st.update(x)
    st.finalize()
    for x in xs:
        st.update(x)
    st.finalize()
    mom = channel_moments(xs)
    w = weight.detach().float()
    score = {"wanda": scores.get("wanda")(w, st), "ria": scores.get("ria")(w, st, a=0.5)}
    if scores_out is not None:
        scores_out[name] = score["ria"].clone()
    deg: dict[str, Any] = {"rows": int(w.shape[0])}
    kept: dict[str, float] = {}
    for metric, kind in MASKS:
        d, share = degrees(score[metric], kind)
        deg[f"{metric}/{kind}"] = [int(v) for v in d.tolist()]
        kept[f"{metric}/{kind}"] = round(share, 6)
    return {
        "name": name,
        "block": block,
        "linear": linear.split(".")[-1],
        "in_features": c,
        "out_features": int(w.shape[0]),
        "tokens": int(mom["tokens"]),
        "channels": {
            "norm": rounded(st.norm),
            "entropy": rounded(st.entropy),
            "mean": rounded(mom["mean"]),
            "std": rounded(mom["std"]),
            "min": rounded(st.min),
            "max": rounded(st.max),
        },
        "degree": deg,
        "retained_share": kept,
    }


@torch.no_grad()
def capture_inputs(model, windows: torch.Tensor, names: Sequence[str], batch_size: int) -> dict[str, list]:
    """Inputs of the named linears for every window (one forward of the dense model per batch)."""
    got: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = []
    for n in names:

        def hook(_mod, args, _out, key=n):
            got[key].extend(a.float().cpu() for a in args[0])  # one (tokens, c) tensor per sample

        hooks.append(model.get_submodule(n).register_forward_hook(hook))
    try:
        for i in range(0, windows.shape[0], batch_size):
            model(windows[i : i + batch_size], use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return got


def observe(
    overrides: Sequence[str] = (),
    blocks: Sequence[int] = (0, 15, 29),
    nsamples: int = 8,
    seqlen: int = 512,
    seed: int = 0,
    batch_size: int = 4,
    scores_out: dict[str, torch.Tensor] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Load the configured model, capture the inputs of LINEARS in ``blocks``; return the record's
    config, its rows (one per layer) and its extra (conventions, seconds)."""
    import esparse
    from esparse.models import get_adapter
    from esparse.run.calibration import calibration_ids

    cfg = compose_config(overrides)
    t0 = time.perf_counter()
    model, tok = esparse.load_model(cfg)
    adapter = get_adapter(model)
    nblocks = len(adapter.blocks(model))
    bad = [b for b in blocks if not 0 <= b < nblocks]
    if bad:
        raise ValueError(f"blocks {bad} out of range: {cfg['model']['name']} has {nblocks} blocks")
    cal = {"name": "bundled_wiki", "nsamples": nsamples, "seqlen": seqlen, "seed": seed}
    calib = calibration_ids({**cfg, "calibration": cal}, tok)
    windows = calib.ids
    names = [f"{adapter.blocks_path}.{b}.{lin}" for b in blocks for lin in LINEARS]
    xs = capture_inputs(model, windows, names, batch_size)
    layers = []
    for b in blocks:
        for lin in LINEARS:
            name = f"{adapter.blocks_path}.{b}.{lin}"
            layers.append(layer_record(name, b, lin, model.get_submodule(name).weight, xs.pop(name), scores_out))
    config = {
        "model": cfg["model"]["name"],
        "device": str(next(model.parameters()).device),
        "overrides": list(overrides),
        "blocks": list(blocks),
        "linears": list(LINEARS),
        "calibration": {
            "name": "bundled_wiki",
            "nsamples": nsamples,
            "seqlen": seqlen,
            "seed": seed,
            "starts_sha": calib.details["starts_sha"],
        },
    }
    extra = {
        "conventions": {
            "norm": "sqrt(sum over tokens of x^2 / nsamples) (Wanda)",
            "std": "population std over all nsamples*seqlen tokens",
            "entropy": "natural-log entropy of 100 equal bins over the channel's [min, max]",
            "degree": "kept weights per input channel (of `rows` output rows), original channel order; "
            "unstructured_50 prunes 50 % per output row",
            "retained_share": "sum of kept scores / sum of all scores",
            "ria": "a = 0.5",
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return config, layers, extra


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, nargs="+", default=[0, 15, 29])
    p.add_argument("--nsamples", type=int, default=8)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="default: results/observations/<model>.json")
    p.add_argument(
        "--save-scores",
        default=None,
        metavar="PT",
        help="also torch.save the observed layers' RIA scores (name -> tensor) here, e.g. "
        "results/bench/scores_smollm2.pt: the real matrices of experiments/bench_permutation.py",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=gemma3_270m")
    a = p.parse_args(argv)
    real: dict[str, torch.Tensor] | None = {} if a.save_scores else None
    config, layers, extra = observe(a.overrides, a.blocks, a.nsamples, a.seqlen, a.seed, scores_out=real)
    if a.save_scores:
        Path(a.save_scores).parent.mkdir(parents=True, exist_ok=True)
        torch.save(real, a.save_scores)
        print(f"wrote {a.save_scores} ({len(real)} RIA score matrices)")
    out = Path(a.out) if a.out else ROOT / "results" / "observations" / f"{config['model']}.json"
    what = (
        "Per-input-channel activation statistics and retained degrees of real layers of the dense "
        "model, written by experiments/observations.py and read by `python -m analysis figures`."
    )
    write_bench_record(
        out, "observations", config, layers, what=what, device=config["device"], extra=extra, compact=True
    )
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB, {len(layers)} layers) in {extra['seconds']} s")
    for lay in layers:
        share = ", ".join(f"{k} {v:.4f}" for k, v in lay["retained_share"].items())
        print(f"  {lay['name']:34s} retained share: {share}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
