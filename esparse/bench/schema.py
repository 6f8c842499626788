"""One schema for every bench file, and the one function that writes it.

Bench scripts measure on whatever machine they find (a GPU, a loaded CPU, an idle one) and analysis
must read their files years later without guessing what a file is. So every bench JSON is one object
of this shape, written atomically by :func:`write_bench_record`:

=================  ========  =================================================================
key                type      meaning
=================  ========  =================================================================
``schema_version`` int       :data:`SCHEMA_VERSION`; a reader refuses any other
``kind``           str       what was measured, a key of :data:`COLUMNS`; it fixes the columns
``what``           str       one line: what the rows are
``measured_at``    str/null  ISO 8601 UTC of the measurement; null only where a migrated file
                             never said
``environment``    object    ``esparse.records.provenance.environment(device)`` of the measuring process
                             (a migrated record keeps the environment its old file recorded)
``config``         object    the parameters that produced the rows (model, grid, seeds, arguments)
``columns``        object    ``{column: {"unit": ..., "about": ...}}``: every column a row may hold
``rows``           list      one object per measurement; a column absent from a row was not
                             measured there (e.g. no sparse time without a kernel)
``extra``          object    derived summaries and transcribed paper values, for people; no table
                             reads them
``migrated_from``  object    only in a record converted from an older shape:
                             ``{"file", "sha256", "by"}`` (the old file, its hash, the converter)
=================  ========  =================================================================

Units: ``ms`` / ``s`` are milliseconds / seconds of wall time unless the column says otherwise,
``bytes`` are exact byte counts, ``GB`` is 1e9 bytes, ``count`` an integer, ``ratio`` and
``fraction`` are dimensionless, ``label`` a name from a fixed vocabulary (the layer kinds of
``esparse.bench.shapes``, the permutation registry's method names, ``conf/model`` names), ``object``
a nested JSON value described by the column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from esparse.records import provenance, store

SCHEMA_VERSION = 1

_GEMM = {
    "model": ("label", "conf/model name whose shapes were timed; absent when timed on a loaded model"),
    "stage": ("label", "context (batch x seqlen tokens at once) or decode (one token per sequence)"),
    "batch": ("count", "sequences"),
    "seqlen": ("tokens", "sequence length of the context stage; null for decode"),
    "layer": ("label", "linear kind: qkv, q, kv, att_out, ffn1, ffn2 (esparse.bench.shapes)"),
    "label": ("label", "the kind as E-Sparse's table prints it (Q/K/V, K/V, FFN-1, ...)"),
    "out_features": ("count", "weight rows"),
    "in_features": ("count", "weight columns"),
    "per_block": ("count", "matrices of this kind per decoder block"),
    "tokens": ("tokens", "rows of the input: batch x seqlen (context) or batch (decode)"),
    "dtype": ("label", "dtype timed (float32 on CPU whatever was asked)"),
    "backend": ("label", "cusparselt or cutlass"),
    "device": ("label", "device name"),
    "available": ("bool", "whether the 2:4 kernel ran; false rows carry dense timings only"),
    "reason": ("text", "why the kernel ran or did not"),
    "repeats": ("count", "timed repeats"),
    "warmup": ("count", "untimed repeats before them"),
    "dense_ms": ("ms", "median dense F.linear time over the repeats"),
    "dense_ms_min": ("ms", "fastest dense repeat"),
    "dense_tflops": ("TFLOP/s", "2 x tokens x out x in / dense_ms"),
    "sparse_ms": ("ms", "median 2:4 semi-structured time; only where available"),
    "sparse_ms_min": ("ms", "fastest 2:4 repeat"),
    "speedup": ("ratio", "dense_ms / sparse_ms"),
    "max_rel_err": ("ratio", "largest relative Frobenius error of the 2:4 output vs dense-with-zeros"),
}

_MEMORY = {
    "model": ("label", "conf/model name"),
    "params": ("count", "parameters (a tied lm_head counted once)"),
    "dense_bytes": ("bytes", "every weight dense"),
    "compressed_bytes": ("bytes", "every block linear N:M-compressed (values + index metadata), the rest dense"),
    "ratio": ("ratio", "compressed_bytes / dense_bytes"),
    "saving": ("fraction", "1 - ratio"),
    "linear_dense_bytes": ("bytes", "the block linears alone, dense"),
    "linear_compressed_bytes": ("bytes", "the block linears alone, compressed"),
    "linear_ratio": ("ratio", "linear_compressed_bytes / linear_dense_bytes"),
    "components": (
        "object",
        "{component: {params, dense_bytes, compressed_bytes, nm_int4_bytes, nm_int8_bytes, int4_bytes}}"
        " (embeddings, qkv, ..., lm_head; older records lack the quantized keys)",
    ),
    # quantized layouts (esparse.bench.memory.quantized_bytes): the block linears as integer codes with an
    # fp16 scale and zero per row and group of quant_group_size columns, the rest fp16; absent in older rows
    "quant_group_size": ("count", "input columns per quantization group of the int4 / int8 figures"),
    "nm_int4_bytes": ("bytes", "every block linear N:M + int4 codes (values + index metadata + scale/zero)"),
    "nm_int8_bytes": ("bytes", "every block linear N:M + int8 codes (values + index metadata + scale/zero)"),
    "int4_bytes": ("bytes", "every block linear dense int4 (quantization alone, for reference)"),
    "nm_int4_ratio": ("ratio", "nm_int4_bytes / dense_bytes"),
    "nm_int8_ratio": ("ratio", "nm_int8_bytes / dense_bytes"),
    "int4_ratio": ("ratio", "int4_bytes / dense_bytes"),
    "linear_nm_int4_bytes": ("bytes", "the block linears alone, N:M + int4"),
    "linear_nm_int8_bytes": ("bytes", "the block linears alone, N:M + int8"),
    "linear_int4_bytes": ("bytes", "the block linears alone, dense int4"),
}

_PRUNE_MEMORY = {
    "placement": ("label", "on_device, offload or offload_activations_on_cpu"),
    "device": ("label", "device of the pruning run"),
    "host_peak_gb_prune": ("GB", "peak host RSS during the prune stage (sampled)"),
    "host_peak_gb_all": ("GB", "peak host RSS over every stage"),
    "device_peak_gb_prune": ("GB", "torch.cuda.max_memory_allocated in the prune stage; null on CPU"),
    "projected_device_gb": ("GB", "esparse.bench.prune_memory's projection, rounded to 4 decimals"),
    "projected_device_bytes": ("bytes", "the same projection, exact"),
    "prune_seconds": ("s", "the run record's prune timing"),
    "wall_seconds": ("s", "wall time of the whole run.py process"),
    "config_hash": ("label", "config hash of the run (one for all placements: placement is not semantic)"),
}

_PRUNE_COST = {
    "variant": ("label", "a score alone (wanda, ria, esparse, sparsegpt) or a score + a step (+ dsnot, + gptq, ...)"),
    "base": ("label", "the variant this one adds a step to; null for a score alone"),
    "step": ("label", "refine or quant: the step after the mask; null for a score alone"),
    "step_seconds": ("s", "the step's own time as the run measured it (refine/seconds, quant/seconds)"),
    "prune_seconds": ("s", "the run record's prune timing (load and data excluded), fastest repeat"),
    "wall_seconds": ("s", "wall time of that run.py process"),
    "added_seconds": ("s", "prune_seconds - the base's prune_seconds"),
    "added_fraction": ("fraction", "prune_seconds / the base's prune_seconds - 1"),
    "host_peak_gb_prune": ("GB", "peak host RSS during the prune stage (sampled)"),
    "loadavg_1min": ("load", "1-minute load average when the fastest repeat started"),
    "repeats": ("count", "runs of this variant; the fastest counts"),
    "config_hash": ("label", "config hash of the fastest run"),
}

_PERMUTATION = {
    "case": ("label", "the score matrix: synthetic <r>x<c> [(reduced)] or real <layer> <r>x<c>"),
    "model": ("label", "synthetic or real (a real layer's RIA score)"),
    "rows": ("count", "score rows (output channels)"),
    "cols": ("count", "score columns (input channels, the ones permuted)"),
    "n": ("count", "N of the N:M pattern"),
    "m": ("count", "M of the N:M pattern"),
    "method": ("label", "permutation registry name"),
    "kwargs": ("object", "keyword arguments of the method ({} for its defaults)"),
    "label": ("label", "method(kwargs), the name a table or figure prints"),
    "device": ("label", "where the scores lived: cpu (<cpu model>, <cores> cores) or the GPU's name"),
    "threads": ("count", "torch threads this row's times were measured at"),
    "seconds": ("s", "fastest wall time over the repeats, validation and never-worse guard included"),
    "cpu_seconds": ("s", "process CPU time (all threads) of the fastest repeat"),
    "seconds_all": ("list of s", "every repeat's wall time"),
    "loadavg_1min": ("load", "1-minute load average when this thread count started"),
    "retained": ("score", "retained N:M score under the method's permutation (float64 sum)"),
    "retained_over_bound": ("fraction", "retained / the unstructured upper bound"),
    "gain_over_none": ("fraction", "retained / retained under the identity - 1"),
}

_OBSERVATIONS = {
    "name": ("label", "module path of the linear whose input was observed"),
    "block": ("count", "decoder block index"),
    "linear": ("label", "q_proj or down_proj"),
    "in_features": ("count", "input channels"),
    "out_features": ("count", "output rows"),
    "tokens": ("count", "calibration tokens observed"),
    "channels": ("object", "per input channel, 4 significant digits: norm, entropy, mean, std, min, max"),
    "degree": ("object", "kept weights per input channel per '<score>/<mask>' and the row count 'rows'"),
    "retained_share": ("object", "per '<score>/<mask>': kept score / total score"),
}

_DEVICE_MASKS = {
    "model": ("label", "the tiny random model the masks were made on (tests only: its numbers mean nothing)"),
    "metric": ("label", "score registry name"),
    "pattern": ("label", "the N:M pattern"),
    "shuffle": ("label", "permutation registry name"),
    "device": ("label", "where the first prune ran (the GPU's name, or cpu in the dry run)"),
    "reference_device": ("label", "where the second prune ran (cpu)"),
    "dtype": ("label", "the model dtype on both sides"),
    "mask_entries": ("count", "weights of every pruned linear"),
    "differing": ("count", "weights kept on one device and pruned on the other"),
    "agreement": ("fraction", "1 - differing / mask_entries"),
    "pattern_ok": ("label", "both models satisfy the pattern (true/false)"),
    "seconds": ("s", "wall time of the device's prune"),
}

_SCALING = {
    "case": ("label", "experiments/bench_scaling.py's case name"),
    "what": ("text", "the case in words (an embedded model, or a random LLaMA with a paper model's block shapes)"),
    "model": ("label", "the record's model.name"),
    "blocks": ("count", "decoder blocks"),
    "hidden_size": ("count", "hidden size"),
    "intermediate_size": ("count", "MLP width"),
    "linear_params": ("count", "parameters of every block linear, all blocks (what pruning passes through)"),
    "head_params": ("count", "output-head parameters (vocab x hidden)"),
    "eval_params": ("count", "linear_params + head_params (what evaluation passes tokens through)"),
    "dtype": ("label", "model dtype"),
    "offload": ("bool", "offload=true (on a CPU: blocks move from the CPU to the CPU)"),
    "calib_tokens": ("tokens", "calibration windows x tokens"),
    "eval_tokens": ("tokens", "evaluation windows x tokens"),
    "prune_seconds": ("s", "the record's prune timing"),
    "eval_seconds": ("s", "the record's eval timing (perplexity)"),
    "host_peak_gb": ("GB", "peak host RSS of the run, any stage (sampled)"),
    "host_peak_gb_prune": ("GB", "peak host RSS during pruning"),
    "host_peak_gb_eval": ("GB", "peak host RSS during evaluation"),
    "prune_gflops": ("GFLOP/s", "2 passes x 2 x linear_params x calib_tokens / prune_seconds (attention not counted)"),
    "eval_gflops": ("GFLOP/s", "2 x eval_params x eval_tokens / eval_seconds"),
    "prune_gemm_fraction": ("fraction", "prune_gflops / the float32 GEMM rate measured in the same run"),
    "eval_gemm_fraction": ("fraction", "eval_gflops / the float32 GEMM rate measured in the same run"),
    "wall_seconds": ("s", "wall time of the run.py process (load and data included)"),
    "config_hash": ("label", "config hash of the run"),
}

_EVAL_MEMORY = {
    "model": ("label", "bundled model (conf/model name)"),
    "stage": ("label", "ppl or zeroshot"),
    "path": ("label", "esparse (head on demand) or reference (full logits: the model's own / lm-eval's HFLM)"),
    "metric": ("label", "what value is: perplexity or acc"),
    "value": ("value", "the evaluation's result"),
    "rel_diff_vs_reference": ("fraction", "|value - the reference's| / |the reference's|"),
    "size": ("count", "perplexity windows of 512 tokens, or PIQA items"),
    "batch_size": ("count", "windows or requests per forward"),
    "vocab": ("count", "output vocabulary (columns of the logits)"),
    "host_rss_before_gb": ("GB", "RSS after loading the model and data, before the evaluation"),
    "host_peak_gb": ("GB", "peak RSS during the evaluation (sampled)"),
    "added_gb": ("GB", "host_peak_gb - host_rss_before_gb"),
    "seconds": ("s", "wall time of the evaluation"),
    "loadavg_1min": ("load", "1-minute load average at its end"),
}

_DEFAULT_RUN = {
    "repeat": ("count", "which repeat (each its own run.py process)"),
    "model": ("label", "conf/model name"),
    "metric": ("label", "the score"),
    "pattern": ("label", "the sparsity pattern"),
    "calib_tokens": ("count", "calibration windows x tokens"),
    "eval_tokens": ("count", "perplexity windows x tokens actually scored"),
    "linear_params": ("count", "parameters of the block linears (what pruning passes tokens through)"),
    "head_params": ("count", "parameters of the output head"),
    "load_seconds": ("s", "the record's load timing"),
    "data_seconds": ("s", "calibration and evaluation data (tokenizing)"),
    "prune_seconds": ("s", "the record's prune timing"),
    "eval_seconds": ("s", "the record's eval timing (the pruned model only: dense_baseline=false)"),
    "wall_seconds": ("s", "wall time of the run.py process"),
    "minimal_tflop": ("TFLOP", "2 x 2 x linear x calibration tokens + 2 x (linear + head) x evaluation tokens"),
    "achieved_gflops": ("GFLOP/s", "minimal_tflop over prune + eval seconds"),
    "gemm_gflops": ("GFLOP/s", "float32 4096^3 GEMM rate measured just before the run, same threads"),
    "gemm_fraction": ("fraction", "achieved_gflops / gemm_gflops"),
    "host_peak_gb": ("GB", "peak host RSS over every stage"),
    **{
        f"host_peak_gb_{stage}": ("GB", f"peak host RSS of the {stage} stage")
        for stage in ("load", "eval_data", "calibration_data", "prune", "keep", "eval")
    },
    "loadavg_1min": ("load", "1-minute load average after the run"),
    "config_hash": ("label", "config hash of the run"),
}

#: every kind of bench record and its columns: {kind: {column: (unit, about)}}
COLUMNS: dict[str, dict[str, tuple[str, str]]] = {
    "gemm": _GEMM,
    "memory": _MEMORY,
    "prune_memory": _PRUNE_MEMORY,
    "prune_cost": _PRUNE_COST,
    "permutation": _PERMUTATION,
    "observations": _OBSERVATIONS,
    "device_masks": _DEVICE_MASKS,
    "scaling": _SCALING,
    "eval_memory": _EVAL_MEMORY,
    "default_run": _DEFAULT_RUN,
}


def bench_record(
    kind: str,
    config: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    what: str,
    device: str = "cpu",
    environment: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    measured_at: str | None | Literal["now"] = "now",
    migrated_from: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The bench record of ``rows`` (see the module docstring), checked against ``kind``'s columns.

    ``environment`` defaults to ``provenance.environment(device)`` of this process; only a migration
    passes another (the one the old file recorded), together with ``migrated_from``.
    """
    if kind not in COLUMNS:
        raise ValueError(f"bench kind={kind!r} is not one of {sorted(COLUMNS)}")
    if (environment is None) != (migrated_from is None):
        raise ValueError("environment and migrated_from go together: a migrated record keeps its old environment")
    columns = COLUMNS[kind]
    out_rows = []
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - set(columns))
        if unknown:
            raise ValueError(f"{kind} row {i} has columns {unknown} that COLUMNS[{kind!r}] does not define")
        out_rows.append(dict(row))
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "what": what,
        "measured_at": store.now_iso() if measured_at == "now" else measured_at,
        "environment": dict(environment) if environment is not None else provenance.environment(device),
        "config": dict(config),
        "columns": {name: {"unit": unit, "about": about} for name, (unit, about) in columns.items()},
        "rows": out_rows,
        "extra": dict(extra or {}),
    }
    if migrated_from is not None:
        record["migrated_from"] = {k: migrated_from[k] for k in ("file", "sha256", "by")}
    return record


def write_bench_record(
    path: str | Path,
    kind: str,
    config: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    compact: bool = False,
    **fields: Any,
) -> Path:
    """Write :func:`bench_record` to ``path`` atomically (``compact``: no indentation, for large rows)."""
    return store.write_json_atomic(path, bench_record(kind, config, rows, **fields), compact=compact)


def device_slug(name: str) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower())
    return "-".join(p for p in slug.split("-") if p) or "unknown"
