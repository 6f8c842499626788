"""The results page (docs/results.md) and the README's summary are what the committed records give,
number for number, and their claims follow the paired test: a number without a record behind it
fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from analysis.stats import headline

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def reference_only(tmp_path: Path) -> Path:
    """A results dir holding only the committed records (a developer's own runs/ must not count)."""
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "runs").symlink_to(ROOT / "results" / "reference" / "runs")
    return tmp_path


def _block(path: Path, begin: str, end: str) -> tuple[str, str]:
    text = path.read_text()
    block, after = text.split(begin, 1)[1].split(end, 1)
    return block.strip(), after


def test_the_results_page_is_generated_from_the_committed_records(reference_only):
    block, _ = _block(ROOT / headline.PAGE, headline.BEGIN, headline.END)
    assert block == headline.build(reference_only), (
        "docs/results.md differs from the records: run `python -m analysis headline`"
    )


def test_the_readme_summary_is_generated_from_the_committed_records(reference_only):
    block, _ = _block(ROOT / headline.README, headline.SUMMARY_BEGIN, headline.SUMMARY_END)
    assert block == headline.summary(reference_only), (
        "README's summary differs from the records: run `python -m analysis headline`"
    )
    assert "Survives Holm in every model" in block


def test_the_reading_quotes_only_p_values_the_page_gives():
    """The hand-written reading of the tables goes stale when records change: every ``p = x`` and
    ``Holm p = x`` it quotes must be a value the generated block prints."""
    block, after = _block(ROOT / headline.PAGE, headline.BEGIN, headline.END)
    reading = " ".join(after.split())  # one line: a quote may wrap anywhere
    quoted = re.findall(r"(Holm )?p = (\d\.\d+)", reading)
    assert quoted, "no p-value quoted under the block: the check would assert nothing"
    for holm, value in quoted:
        pattern = rf"Holm p={re.escape(value)}\b" if holm else rf"(?<!Holm )p={re.escape(value)}\b"
        assert re.search(pattern, block), f"docs/results.md quotes {holm}p = {value}; the block prints no such value"


def test_a_list_separates_what_survives_holm_from_what_holds_per_comparison_only(tmp_path):
    """Three seeds each: a large gap survives Holm, a small consistent one holds per comparison only
    when the family is large enough, and noise is not separable."""
    for seed, (w, r, e) in enumerate([(100.0, 110.0, 150.0), (101.0, 112.0, 160.0), (102.0, 111.5, 155.0)]):
        _rec(tmp_path, f"w{seed}", "wanda", seed, w)
        _rec(tmp_path, f"r{seed}", "ria", seed, r)
        _rec(tmp_path, f"e{seed}", "esparse", seed, e)
    text = headline.build(tmp_path)
    assert "- survives Holm: " in text
    for line in text.splitlines():
        if line.startswith("- survives Holm: 2:4"):
            holm = float(re.search(r"Holm p=([\d.e-]+)", line).group(1))
            assert holm < 0.05, line
        if line.startswith("- per comparison only"):
            holm = float(re.search(r"Holm p=([\d.e-]+)", line).group(1))
            p = float(re.search(r"\(p=([\d.e-]+)", line).group(1))
            assert p < 0.05 <= holm, line


def _rec(
    tmp: Path,
    h: str,
    metric: str,
    seed: int,
    ppl: float,
    model: str = "smollm2_135m",
    shuffle: str = "none",
    steps: dict | None = None,
    **pattern,
) -> None:
    cfg = {
        **(steps or {}),
        "model": {"name": model},
        "metric": {"name": metric, "reconstruct": False, **({"a": 0.5} if metric == "ria" else {})},
        "pattern": {"name": "2:4", "kind": "nm", "n": 2, "m": 4, **pattern},
        "shuffle": {"name": shuffle},
        "calibration": {"name": "bundled_wiki", "nsamples": 32, "seqlen": 512, "seed": seed},
        "eval": {"ppl": {"nsamples": 32, "seqlen": 512}},
    }
    rec = {"config": cfg, "config_hash": h, "status": "done", "metrics": {headline.VALUE: ppl}, "env": {}}
    (tmp / "runs").mkdir(exist_ok=True)
    (tmp / "runs" / f"{h}.json").write_text(json.dumps(rec))


def test_cells_claims_and_spreads_by_hand(tmp_path):
    for s, (w, r) in enumerate([(180.0, 170.0), (190.0, 171.0), (170.0, 169.0)]):
        _rec(tmp_path, f"w{s}", "wanda", s, w)
        _rec(tmp_path, f"r{s}", "ria", s, r)
    _rec(tmp_path, "rhigh", "ria", 0, 174.0, tie_break="high_index")
    _rec(tmp_path, "rrand", "ria", 0, 168.3, tie_break="random")
    text = headline.build(tmp_path)
    assert "| Wanda | 180.0 ± 10.0 (3) | not run |" in text
    assert "| RIA (a = 0.5) | 170.0 ± 1.0 (3) | not run |" in text
    # Wanda - RIA = 10, 19, 1: mean 10, sd 9, t = 10 / (9 / sqrt 3) = 1.92, two-sided p(2 df) = 0.19
    assert "2:4: RIA (a = 0.5) vs Wanda: not separable (p=0.19, n=3)" in text
    assert "- survives Holm: none" in text
    # seed range (171 - 169) / 170 = 1.2 %; tie range (174 - 168.3) / mean(170, 174, 168.3) = 3.3 %
    assert "| RIA (a = 0.5) | 170.0 ± 1.0 (3) | 170.0 | 174.0 | 168.3 | 1.2% | 3.3% |" in text


def test_each_permutation_is_compared_with_none_paired_by_seed_and_holm_adjusted(tmp_path):
    nones = (180.0, 190.0, 170.0)
    perms = {
        "esparse": (150.0, 161.0, 139.0),  # - none = -30, -29, -31: mean -30, sd 1, t = -52, p(2 df) = 0.00037
        "ria_cp_lsa": (169.0, 185.0, 162.0),  # -11, -5, -8: mean -8, sd 3, t = -4.62, p = 0.044
        "ria_cp": (175.0, 195.0, 167.0),  # -5, 5, -3: mean -1, sd 5.29, t = -0.33, p = 0.77
    }
    for s, none in enumerate(nones):
        _rec(tmp_path, f"n{s}", "wanda", s, none)
        for shuffle, ppl in perms.items():
            _rec(tmp_path, f"{shuffle}{s}", "wanda", s, ppl[s], shuffle=shuffle)
    text = headline.build(tmp_path)
    # Holm over 3: 0.00037 x 3 = 0.0011; 0.044 x 2 = 0.088 (no longer below 0.05); 0.77 x 1 = 0.77
    assert "- survives Holm: Wanda: `esparse` < `none` (p=0.00037, n=3, Holm p=0.0011)" in text
    only = "- per comparison only (p < 0.05, not after Holm): Wanda: `ria_cp_lsa` < `none` (p=0.044, n=3, Holm p=0.088)"
    assert only in text
    assert "- Wanda: `ria_cp` vs `none`: not separable (p=0.77, n=3)" in text
    assert "each permutation against `none` (two-sided paired t-test, 3 comparisons; Holm p: adjusted over the 3" in (
        text
    )


def test_the_families_table_says_whether_an_ordering_holds_in_every_model(tmp_path):
    # Wanda - RIA per seed: SmolLM2 10, 11, 9 (separable, p = 0.0033); Gemma 10, -5, 2 (not separable, p = 0.64)
    for model, wanda, ria in [
        ("smollm2_135m", (180.0, 181.0, 179.0), (170.0, 170.0, 170.0)),
        ("gemma3_270m", (60.0, 55.0, 57.0), (50.0, 60.0, 55.0)),
    ]:
        for s in range(3):
            _rec(tmp_path, f"{model}w{s}", "wanda", s, wanda[s], model=model)
            _rec(tmp_path, f"{model}r{s}", "ria", s, ria[s], model=model)
    text = headline.build(tmp_path)
    assert "## Across families" in text
    assert "| score | smollm2_135m 2:4 | smollm2_135m 4:8 | gemma3_270m 2:4 | gemma3_270m 4:8 |" in text
    # RIA is the lower in both (sum of Wanda - RIA means > 0), so it is named first
    row = "| RIA (a = 0.5) vs Wanda | < (p=0.0033, n=3) | ≈ (p=0.64, n=3) | no: separable in smollm2_135m only |"
    assert row in text
    for model in ("smollm2_135m", "gemma3_270m"):  # both models also get their own section
        assert f"## {model}" in text


def test_a_permutation_gain_holds_across_families_only_where_every_model_separates_it(tmp_path):
    grid = {  # Wanda's `none` and `esparse` per seed, per model
        "smollm2_135m": ((180.0, 190.0, 170.0), (150.0, 161.0, 139.0)),  # -30, -29, -31: p = 0.00037
        "gemma3_270m": ((400.0, 420.0, 410.0), (380.0, 395.0, 392.0)),  # -20, -25, -18: t = -10.09, p = 0.0097
    }
    for model, (none, perm) in grid.items():
        for s in range(3):
            _rec(tmp_path, f"{model}n{s}", "wanda", s, none[s], model=model)
            _rec(tmp_path, f"{model}e{s}", "wanda", s, perm[s], model=model, shuffle="esparse")
    for s in range(3):  # `ria_cp` on one model only: nothing to say across families
        _rec(tmp_path, f"cp{s}", "wanda", s, 175.0 + s, shuffle="ria_cp")
    text = headline.build(tmp_path)
    head = "| 2:4 permutation | smollm2_135m | gemma3_270m | same in every model |"
    assert head in text
    # the permutation named first, as in each model's own list
    row = "| Wanda: `esparse` vs `none` | < (p=0.00037, n=3) | < (p=0.0097, n=3) | yes: `esparse` < `none` |"
    assert row in text
    assert "| Wanda: `ria_cp` vs `none` |" not in text
    assert "4:8 permutation" not in text  # no 4:8 record: no 4:8 table


def test_records_made_on_another_machine_are_named_with_their_seeds(tmp_path):
    amd = {"cpu": {"model": "AMD EPYC", "torch_capability": "AVX2"}}
    xeon = {"cpu": {"model": "Intel Xeon", "torch_capability": "AVX512"}}
    for s in range(3):
        _rec(tmp_path, f"n{s}", "wanda", s, 180.0 + s)
        _rec(tmp_path, f"e{s}", "wanda", s, 150.0 + s, shuffle="esparse")
    _rec(tmp_path, "r0", "ria", 0, 170.0)  # made before the CPU was recorded
    for h, env in [("n0", amd), ("n1", amd), ("n2", amd), ("e0", amd), ("e1", xeon), ("e2", xeon)]:
        path = tmp_path / "runs" / f"{h}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "env": env}))
    line = next(x for x in headline.build(tmp_path).splitlines() if x.startswith("Records by machine"))
    assert line.startswith("Records by machine: AMD EPYC (AVX2): 4, Intel Xeon (AVX512): 2, not recorded")
    assert line.endswith("than AMD EPYC (AVX2): Intel Xeon (AVX512): 2:4 wanda + `esparse` (seeds 1, 2).")


def test_one_machine_is_one_count():
    from analysis.records import machine

    assert machine({"cpu": {"model": "AMD EPYC", "torch_capability": "AVX2"}, "gpu": None}) == "AMD EPYC (AVX2)"
    assert machine({"cpu": {"model": "AMD EPYC"}, "gpu": {"name": "NVIDIA H200"}}) == "NVIDIA H200"
    assert machine({}) is None


def test_one_model_has_no_families_section(tmp_path):
    for s in range(2):
        _rec(tmp_path, f"w{s}", "wanda", s, 180.0 + s)
    assert "Across families" not in headline.build(tmp_path)


def test_a_refined_or_per_linear_record_never_stands_in_for_the_plain_cell(tmp_path):
    """DSnoT on Wanda's mask and RIA's permutation per linear are other methods: their records (newer)
    must not replace the plain Wanda / per-group cells of the same seed."""
    for seed in range(3):
        _rec(tmp_path, f"w{seed}", "wanda", seed, 100.0 + seed)
        _rec(tmp_path, f"p{seed}", "ria", seed, 80.0 + seed, shuffle="ria_cp_lsa")
    for h, extra in (
        ("dsnot", {"refine": {"name": "dsnot"}}),
        ("lin", {"shuffle": {"name": "ria_cp_lsa", "share": "linear"}}),
    ):
        path = tmp_path / "runs" / f"{'w' if h == 'dsnot' else 'p'}0.json"
        rec = json.loads(path.read_text())
        rec["config"].update(extra)
        rec["config_hash"] = h
        rec["metrics"][headline.VALUE] = 1.0
        (tmp_path / "runs" / f"{h}.json").write_text(json.dumps(rec))
    text = headline.build(tmp_path)
    assert "| Wanda | 101.0 ± 1.0 (3) |" in text  # the plain cells keep their own records
    assert "| RIA (a = 0.5) | not run | not run | not run | not run | 81.0 ± 1.0 (3) |" in text
    assert "| Wanda | 101.0 ± 1.0 (3) | 1.0 (n=1) | not run | not run |" in text  # DSnoT: a table of its own
    assert "| RIA + `ria_cp_lsa`, one per linear (`share=linear`, RIA's code) | 1.0 (n=1) |" in text


def test_dsnot_is_paired_with_the_same_mask_without_it(tmp_path):
    """Each DSnoT cell against its own base (same score, permutation, seed), one Holm family."""
    dsnot = {"refine": {"name": "dsnot"}}
    for seed, (base, refined, cp, cp_refined) in enumerate([(100, 90, 80, 80.5), (101, 92, 81, 80), (102, 91, 82, 83)]):
        _rec(tmp_path, f"w{seed}", "wanda", seed, base)
        _rec(tmp_path, f"d{seed}", "wanda", seed, refined, steps=dsnot)
        _rec(tmp_path, f"c{seed}", "wanda", seed, cp, shuffle="ria_cp_lsa")
        _rec(tmp_path, f"cd{seed}", "wanda", seed, cp_refined, shuffle="ria_cp_lsa", steps=dsnot)
    text = headline.build(tmp_path)
    assert "| Wanda | 101.0 ± 1.0 (3) | 91.0 ± 1.0 (3) | 81.0 ± 1.0 (3) | 81.2 ± 1.6 (3) |" in text
    # differences -10, -9, -11: mean -10, sd 1, t = -17.3, two-sided p(2 df) = 0.0033; Holm over 2: 0.0066
    assert "- survives Holm: Wanda: no permutation + DSnoT < no permutation (p=0.0033, n=3, Holm p=0.0066)" in text
    assert "- Wanda: `ria_cp_lsa` + DSnoT vs `ria_cp_lsa`: not separable" in text
    assert "RIA (a = 0.5) |" not in text.split("DSnoT at 2:4")[1].split("Seed spread")[0]  # no DSnoT record: no row


def test_quantized_cells_read_4_bit_groups_of_128_and_pair_with_the_pruned_model(tmp_path):
    """Prune, then quantize: another bit width never stands in for the presets' 4-bit cell."""
    unstructured = {"name": "unstructured", "kind": "unstructured", "n": 0, "m": 0, "sparsity": 0.5}

    def quant(name: str, bits: int = 4) -> dict:
        return {"quant": {"name": name, "bits": bits, "group_size": 128, "order": "prune_first"}}

    for seed, (pruned, gptq) in enumerate([(20.0, 21.0), (21.0, 22.2), (22.0, 22.8)]):
        for h, ppl, steps in (("p", pruned, None), ("g", gptq, quant("gptq")), ("g8", 1.0, quant("gptq", 8))):
            _rec(tmp_path, f"{h}{seed}", "wanda", seed, ppl, steps=steps, **unstructured)
    text = headline.build(tmp_path)
    part = text.split("Prune, then quantize, at 50 % unstructured")[1]
    assert "| Wanda | 21.0 ± 1.0 (3) | 22.0 ± 0.9 (3) | not run |" in part
    # differences 1.0, 1.2, 0.8: mean 1, sd 0.2, t = 8.66, two-sided p(2 df) = 0.013
    assert "Wanda: + GPTQ (4-bit, g128) > as pruned (p=0.013, n=3" in part
    assert "at 2:4 (ours)" not in text  # no quantized 2:4 record: no table
