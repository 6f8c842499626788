"""Does a record run a paper cell's configuration? The cell's keys against the record's fields.

A cell names its method, pattern, permutation and calibration; what it leaves unnamed it reads as the
presets run it: the embedded models' defaults on a local line (``alpha=auto``, Wanda's norm, one
permutation per input group), the papers' readings at paper scale (α = 70 with the l2 norm, RIA's
permutations as RIA's code). Only records of the default tie rule, no mask refinement and no
quantization fill a cell unless it names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.records import is_missing, pattern_fields

PAPER_CALIBRATION = "c4"  # both papers: 128 x 2048-token C4 samples
LOCAL_CORPUS = "bundled_wiki"  # the embedded default's corpus: Wikipedia text shipped offline (esparse/data.py)
#: the embedded default's calibration and evaluation sizes (conf/calibration/bundled_wiki.yaml,
#: conf/eval/default.yaml; a test holds them equal to the YAML)
LOCAL_SIZES = {"nsamples": 32, "cal_seqlen": 512, "eval_nsamples": 32, "eval_seqlen": 512}
#: the tie-break rule every table reads; the other rules' records feed the tie-spread table only
DEFAULT_TIE_BREAK = "low_index"
#: a quantized cell that names no setting reads the presets' (conf/experiment/ria_t12_*.yaml): RIA's
#: appendix I states neither bits nor group size; 4 bits in groups of 128, pruned first, is both
#: GPTQ's and AWQ's standard setting
QUANT_DEFAULTS = {"quant_bits": 4, "quant_group_size": 128, "quant_order": "prune_first"}


def as_float(v: Any) -> float | None:
    """A record field as a number; None where it is missing or no number (a bool is a flag, not 1.0)."""
    if is_missing(v) or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def as_str(v: Any) -> str | None:
    """A record field as text; None where it is missing (NaN in a frame column)."""
    return None if is_missing(v) else str(v)


def is_close(a: float | None, b: float | None) -> bool:
    """Equal as config numbers (float noise aside); a missing side matches nothing."""
    return a is not None and b is not None and abs(a - b) < 1e-9


def at_local_sizes(rec: Mapping[str, Any]) -> bool:
    """Was the record made at the embedded default's calibration and evaluation sizes (a size it
    does not record does not count against it)?"""
    return all(is_missing(rec.get(k)) or is_close(as_float(rec.get(k)), v) for k, v in LOCAL_SIZES.items())


def cell_pattern(keys: Mapping[str, Any]) -> dict[str, Any]:
    """kind/n/m/sparsity the cell asks for ("nm" + n/m columns, "2:4", "unstructured", ...)."""
    if keys.get("method") == "dense":
        return {"pattern_kind": "dense"}
    p = keys.get("pattern")
    if p == "nm" or (p is None and "n" in keys):
        return {"pattern_kind": "nm", "n": keys["n"], "m": keys["m"]}
    if p in ("unstructured", "structured"):
        return {"pattern_kind": p, "sparsity": keys.get("sparsity", 0.5)}
    f = pattern_fields(p)
    return {"pattern_kind": f["pattern_kind"], "n": f["n"], "m": f["m"]}


def pattern_ok(rec: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Do a record's (or bench row's) pattern fields run ``want`` (a ``cell_pattern``)? No sparsity: 0.5."""
    kind = want["pattern_kind"]
    if rec.get("pattern_kind") != kind:
        return False
    if kind == "nm":
        return is_close(as_float(rec.get("n")), want["n"]) and is_close(as_float(rec.get("m")), want["m"])
    if kind in ("unstructured", "structured"):
        have = as_float(rec.get("sparsity"))
        return is_close(0.5 if have is None else have, want["sparsity"])
    return True


def _calibration_ok(have: str | None, want: str | None, local: bool) -> bool:
    if want is None:
        return have == PAPER_CALIBRATION or (local and have == LOCAL_CORPUS)
    return have == want or (local and want == "wikitext2" and have == LOCAL_CORPUS)


def _alpha_ok(have: Any, local: bool) -> bool:
    """E-Sparse cells hold the presets' alpha: ``auto`` on the embedded models (the paper's 70 is
    tuned for LLaMA at 2048 tokens; see conf/metric/esparse.yaml), the paper's 70 at paper scale.
    A record without the key predates ``auto`` and ran 70."""
    if isinstance(have, str):
        return local and have == "auto"
    v = as_float(have)
    return not local and is_close(70.0 if v is None else v, 70.0)


def _readings(shuffle: str, local: bool) -> dict[str, str]:
    """The readings a cell takes as the presets run them unless its keys name one: the local defaults
    on the embedded models; at paper scale E-Sparse's l2 norm and RIA's permutations as RIA's code."""
    ria = not local and shuffle in ("ria_cp", "ria_cp_lsa")
    return {"norm": "wanda" if local else "l2", "share": "linear" if ria else "group",
            "communities": "official" if ria and shuffle == "ria_cp_lsa" else "auto"}  # fmt: skip


def _quant_ok(rec: Mapping[str, Any], keys: Mapping[str, Any]) -> bool:
    """Bits, group size and order as the cell names them (or as the presets run them)."""
    want = {k: keys.get(k, v) for k, v in QUANT_DEFAULTS.items()}
    return (is_close(as_float(rec.get("quant_bits")), want["quant_bits"])
            and is_close(as_float(rec.get("quant_group_size")), want["quant_group_size"])
            and as_str(rec.get("quant_order")) == want["quant_order"])  # fmt: skip


def matches(rec: Mapping[str, Any], keys: Mapping[str, Any], model: str, local: bool) -> bool:
    """Does this record run the cell's configuration (on ``model``)?"""
    if rec.get("model") != model:
        return False
    if (as_str(rec.get("tie_break")) or DEFAULT_TIE_BREAK) != DEFAULT_TIE_BREAK:
        return False
    if local and not at_local_sizes(rec):
        return False
    want = cell_pattern(keys)
    if not pattern_ok(rec, want):
        return False
    if want["pattern_kind"] == "dense":
        return True  # a dense record has no metric, shuffle or calibration
    if want["pattern_kind"] == "unstructured" and (as_str(rec.get("scope")) or "row") != keys.get("scope", "row"):
        return False  # per output row (Wanda's code) or over the whole layer (RIA's code without --per_outneuron)
    metric = as_str(rec.get("metric"))
    if metric != keys.get("method"):
        return False
    if (as_str(rec.get("shuffle")) or "none") != keys.get("shuffle", "none"):
        return False
    reading = {**_readings(keys.get("shuffle", "none"), local), **keys}
    layout = (as_str(rec.get("shuffle_share")) or "group", as_str(rec.get("shuffle_communities")) or "auto")
    if layout != (reading["share"], reading["communities"]):
        return False
    if ((as_str(rec.get("refine")) or "none"), (as_str(rec.get("quant")) or "none")) != (
        keys.get("refine", "none"),
        keys.get("quant", "none"),
    ):
        return False  # a refined mask (DSnoT) or quantized weights are another method
    if keys.get("quant", "none") != "none" and not _quant_ok(rec, keys):
        return False
    rec_flag = not is_missing(rec.get("reconstruct")) and bool(rec.get("reconstruct"))
    if metric != "sparsegpt" and rec_flag != bool(keys.get("reconstruct", False)):
        return False
    if metric == "ria":
        a = as_float(rec.get("metric_a"))
        if not is_close(0.5 if a is None else a, float(keys.get("a", 0.5))):
            return False
    form = as_str(rec.get("form")) or "alpha_entropy"
    if metric == "esparse" and form != keys.get("form", "alpha_entropy"):
        return False
    if metric == "esparse" and not _alpha_ok(rec.get("metric_alpha"), local and form == "alpha_entropy"):
        return False
    if metric == "esparse" and (as_str(rec.get("metric_norm")) or "wanda") != reading["norm"]:
        return False
    return _calibration_ok(as_str(rec.get("calibration")), keys.get("calibration"), local)
