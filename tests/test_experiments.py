"""Experiment presets (conf/experiment/*.yaml): they compose, expand to the expected runs, and the
records those runs would write land in the cells of the paper table they are for. No model is loaded:
records are synthesised from the composed job configs, exactly as the pipeline would name them."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
from helpers import ROOT

EXPERIMENTS = ROOT / "conf" / "experiment"
TABLES = (
    "esparse_t1", "esparse_t2", "esparse_t3", "esparse_ablation",
    "ria_t1", "ria_t2", "ria_t4", "ria_t6", "ria_t7", "ria_t8", "ria_t10", "ria_t11", "ria_t12",
)  # fmt: skip
PRESETS = tuple(f"{t}_{size}" for t in TABLES for size in ("local", "paper"))

# jobs the sweep launches (hand-counted from each preset's product of sweep values) and the
# distinct records they write (a dense job ignores the metric, so both metrics' dense jobs are one)
EXPECTED_JOBS = {
    "esparse_t1_local": 8, "esparse_t1_paper": 32,          # 4 arms x 2 patterns (x 4 models)
    "esparse_t2_local": 5, "esparse_t2_paper": 20,          # dense + 4 methods (x 4 models)
    "esparse_t3_local": 6, "esparse_t3_paper": 12,          # 3 arms x 2 patterns (x 2 OPT models)
    "esparse_ablation_local": 4, "esparse_ablation_paper": 16,
    "ria_t1_local": 4, "ria_t1_paper": 32,                  # 4 arms (x 8 models)
    "ria_t2_local": 7, "ria_t2_paper": 14,                  # 7 arms (x 2 models)
    "ria_t4_local": 24, "ria_t4_paper": 48,                 # 4 metrics x 6 pattern arms (x 2 models)
    "ria_t6_local": 8, "ria_t6_paper": 8,                   # 2 metrics x 4 pattern arms
    "ria_t7_local": 4, "ria_t7_paper": 12,                  # 4 metrics (x 3 calibration sets)
    "ria_t8_local": 7, "ria_t8_paper": 21,                  # 7 arms (x 3 calibration sets)
    "ria_t10_local": 18, "ria_t10_paper": 18,               # 2 metrics x 9 pattern arms
    "ria_t11_local": 4, "ria_t11_paper": 4,
    "ria_t12_local": 36, "ria_t12_paper": 12,               # 4 arms x 3 quant (x 3 seeds)
}  # fmt: skip
DISTINCT_RUNS = {**EXPECTED_JOBS, "ria_t6_local": 7, "ria_t6_paper": 7}
#: the results page's measured sweeps (not one paper table each): arms/metrics x shuffles x patterns x 3 seeds
SWEEP_PRESETS = {"scores_local": 10 * 2 * 3, "shuffles_local": 3 * 5 * 2 * 3, "dsnot_local": 3 * 2 * 2 * 3,
                 "ria_t12_nm_local": 4 * 3 * 3}  # fmt: skip

# cells of the preset's table that its local records fill (the local model's lines), hand-counted
# from paper_values.json: e.g. RIA T10 has 7 rows x 3 columns, of which LLM-Pruner and the
# activation-only rows (6 cells) are methods we do not implement; RIA T6 reports no PIQA column.
EXPECTED_FILLED = {
    "esparse_t1_local": 9,        # 8 method x pattern + FP16 from dense/ppl
    "esparse_t2_local": 5,        # the PiQA column of 5 rows (Avg. needs all five tasks)
    "esparse_t3_local": 7,        # 6 + FP16
    "esparse_ablation_local": 4,
    "ria_t1_local": 5,            # 4 + Dense
    "ria_t2_local": 7,            # every row
    "ria_t4_local": 25,           # 24 + Dense
    "ria_t6_local": 0,
    "ria_t7_local": 4,            # the WikiText-2 / calib WikiText-2 column (3) + Magnitude's WikiText-2
    "ria_t8_local": 7,            # the WikiText-2 / calib WikiText-2 column (6) + Magnitude's WikiText-2
    "ria_t10_local": 15,
    "ria_t11_local": 4,           # whole-model permutation lines, one per shuffle
    "ria_t12_local": 12,          # 4 methods x {as pruned, + GPTQ, + AWQ}
}  # fmt: skip


@cache
def _composed(name: str) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={name}"], return_hydra_config=True)
    return OmegaConf.to_container(cfg, resolve=False)


def sweep_jobs(name: str) -> list[list[str]]:
    """The override lists Hydra's basic sweeper launches for ``python run.py -m +experiment=name``:
    its own expansion, so the order is Hydra's too (sweep params first, then the command line; a
    later override of the same config group wins, which is why a preset never overrides a group
    that one of its arms sets)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = _composed(name)["hydra"]["sweeper"]["params"] or {}
    args = [f"{k}={v}" for k, v in params.items()] + [f"+experiment={name}"]
    (batch,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(args), None)
    return batch


def job_configs(name: str) -> list[dict]:
    """Each job's resolved, normalized config (what esparse.run.pipeline.run hashes and records)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from esparse.run.config import normalize, validate

    out, jobs = [], sweep_jobs(name)  # before the context: sweep_jobs may initialize Hydra itself
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for ovs in jobs:
            cfg = normalize(OmegaConf.to_container(compose("config", overrides=ovs), resolve=True))
            validate(cfg)
            out.append(cfg)
    return out


def synthetic_records(cfgs: list[dict], runs: Path) -> int:
    """One finished record per distinct config, with every metric its eval settings would produce."""
    from esparse.records import hashing

    runs.mkdir(parents=True, exist_ok=True)
    hashes = set()
    for i, cfg in enumerate(cfgs):
        h = hashing.config_hash(cfg)
        hashes.add(h)
        ev = cfg["eval"]
        metrics: dict[str, float] = {}
        for ds in ev["ppl"]["datasets"] or []:
            metrics[f"ppl/{ds}"] = 20.0 + i
            if cfg["pattern"]["kind"] != "dense":
                metrics[f"dense/ppl/{ds}"] = 15.0
        for task in ev["zeroshot"]["tasks"] or []:
            metrics[f"zeroshot/{task}/acc"] = 0.5 + i / 100
        if cfg["pattern"]["kind"] == "nm":
            metrics.update({"permutation/retained_before": 1.0, "permutation/retained_after": 1.01,
                            "permutation/seconds": 1.0 + i})  # fmt: skip
        rec = {"config": cfg, "config_hash": h, "status": "done", "metrics": metrics,
               "env": {"device": "cpu", "finished_at": f"2026-01-01T00:00:{i:02d}+00:00"}}  # fmt: skip
        (runs / f"{h}.json").write_text(json.dumps(rec))
    return len(hashes)


def filled_cells(name: str, results: Path, model: str) -> int:
    from analysis import records as rec_io
    from analysis.tables import paper_tables
    from analysis.tables.matching import NOT_RUN

    df = paper_tables.get(name.rsplit("_", 1)[0])(rec_io.load_records(results))
    return int(((df["ours_model"] == model) & (df["ours"] != NOT_RUN)).sum())


# --------------------------------------------------------------------------------- fast tests


def test_one_local_and_one_paper_preset_per_table():
    found = {p.stem for p in EXPERIMENTS.glob("*.yaml")} - {"ci_reference"}  # CI's reproduction check, no table
    assert found == set(PRESETS) | set(SWEEP_PRESETS)
    assert set(EXPECTED_JOBS) == set(PRESETS)


def test_arms_referenced_by_presets_exist():
    arms = {p.stem for p in (EXPERIMENTS / "arm").glob("*.yaml")}
    for name in PRESETS:
        for line in (EXPERIMENTS / f"{name}.yaml").read_text().splitlines():
            if line.strip().startswith("+experiment/arm:"):
                used = {a.strip() for a in line.split(":", 1)[1].split(",")}
                assert used <= arms, (name, used - arms)


def _overridden_groups(path: Path) -> set[str]:
    from omegaconf import OmegaConf

    out = set()
    for entry in OmegaConf.load(path).get("defaults") or []:
        key = next(iter(entry)) if isinstance(entry, dict) or hasattr(entry, "keys") else str(entry)
        if key.startswith("override /"):
            out.add(key.removeprefix("override /"))
    return out


@pytest.mark.parametrize("name", [*PRESETS, *SWEEP_PRESETS])
def test_no_preset_fights_its_arms_over_a_group(name):
    """Hydra applies the sweep's arm before the preset (params first, command line last), so a group
    set by both would silently take the preset's value (a "dense" arm running at 2:4)."""
    from omegaconf import OmegaConf

    preset = EXPERIMENTS / f"{name}.yaml"
    params = OmegaConf.load(preset).hydra.sweeper.params
    arms = [a.strip() for a in str(params.get("+experiment/arm", "")).split(",") if a.strip()]
    if not arms:
        return
    armed = set().union(*(_overridden_groups(EXPERIMENTS / "arm" / f"{a}.yaml") for a in arms))
    swept = {k for k in params if not k.startswith("+") and "." not in k}
    assert not armed & _overridden_groups(preset), name
    assert not armed & swept, name


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_and_expands(name):
    cfg = _composed(name)
    assert cfg["experiment"] == name
    assert len(sweep_jobs(name)) == EXPECTED_JOBS[name]
    params = cfg["hydra"]["sweeper"]["params"]
    models = [cfg["model"]["name"]] if "model" not in params else params["model"].split(",")
    if name.endswith("_local"):
        assert models == (["gemma3_270m"] if name == "esparse_t3_local" else ["smollm2_135m"])
        assert cfg["calibration"]["name"] == "bundled_wiki"
        assert cfg["device"] == "auto"
    else:
        assert cfg["device"] == "cuda"
        assert cfg["calibration"] == {"name": "c4", "nsamples": 128, "seqlen": 2048, "seed": 0, "batch_size": 1}
        assert not {"smollm2_135m", "gemma3_270m"} & set(models)


@pytest.mark.parametrize("name", SWEEP_PRESETS)
def test_the_readme_sweeps_expand_over_three_seeds(name):
    jobs = sweep_jobs(name)
    assert len(jobs) == SWEEP_PRESETS[name]
    assert sum("calibration.seed=1" in " ".join(j) for j in jobs) == SWEEP_PRESETS[name] // 3
    assert _composed(name)["calibration"]["name"] == "bundled_wiki"


def test_esparse_presets_evaluate_on_wikitext2_validation_ria_on_test():
    for name in ("esparse_t1_paper", "esparse_t3_paper", "esparse_ablation_paper"):
        assert _composed(name)["eval"]["ppl"]["split"] == "validation"
        assert _composed(name)["eval"]["ppl"]["datasets"] == ["wikitext2"]
    assert _composed("ria_t1_paper")["eval"]["ppl"]["split"] == "eval"  # test split for wikitext2


@pytest.mark.parametrize("name", ["esparse_ablation_local", "esparse_ablation_paper"])
def test_esparse_alpha_and_norm_are_the_papers_at_paper_scale_and_auto_locally(name):
    """alpha = 70 balances entropy and norm only for LLaMA at 2048 tokens; the local default keeps
    the balancing intent (auto). A paper preset silently running auto would not reproduce the paper."""
    esparse = [c["metric"] for c in job_configs(name) if c["metric"]["name"] == "esparse"]
    assert {m["alpha"] for m in esparse} == ({70} if name.endswith("_paper") else {"auto"})
    # and ||X_j|| as E-Sparse's text defines it (l2 over all calibration tokens) where 70 is the paper's
    assert {m["norm"] for m in esparse} == ({"l2"} if name.endswith("_paper") else {"wanda"})


def test_ablation_local_records_fill_the_ablation_table(tmp_path):
    cfgs = job_configs("esparse_ablation_local")
    assert [(c["metric"]["name"], c["shuffle"]["name"]) for c in cfgs] == [
        ("wanda", "none"),
        ("esparse", "none"),
        ("esparse", "esparse_global"),
        ("esparse", "esparse"),
    ]
    assert {c["pattern"]["name"] for c in cfgs} == {"2:4"}
    assert synthetic_records(cfgs, tmp_path / "runs") == 4
    assert filled_cells("esparse_ablation_local", tmp_path, "smollm2_135m") == 4


# --------------------------------------------------------------------------------- slow tests


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_every_job_validates_and_writes_distinct_records(name, tmp_path):
    cfgs = job_configs(name)
    assert synthetic_records(cfgs, tmp_path / "runs") == DISTINCT_RUNS[name]
    assert {c["experiment"] for c in cfgs} == {name}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_FILLED))
def test_local_preset_fills_its_table(name, tmp_path):
    cfgs = job_configs(name)
    synthetic_records(cfgs, tmp_path / "runs")
    model = cfgs[0]["model"]["name"]
    assert filled_cells(name, tmp_path, model) == EXPECTED_FILLED[name]


@pytest.mark.parametrize("name", ["ria_t7_local", "ria_t8_local", "ria_t12_local"])
def test_ria_t7_t8_reuse_table_1s_configs(name):
    """Tables 7 and 8 repeat Table 1's LLaMA2-13b values (Table 12 its LLaMA2-7b ones), so their plain
    rows are Table 1's runs: the same config hashes (magnitude and RIA over the whole layer, Wanda and
    SparseGPT per row)."""
    from esparse.records.hashing import config_hash

    def hashes(preset: str) -> set[str]:
        return {config_hash({**c, "experiment": None}) for c in job_configs(preset)}

    t1 = hashes("ria_t1_local")
    assert t1 <= hashes(name)
    rec = [c for c in job_configs(name) if c["metric"].get("reconstruct") and c["metric"]["name"] != "wanda"]
    assert [c["pattern"]["scope"] for c in rec] == (["layer", "layer"] if name == "ria_t8_local" else [])


@pytest.mark.parametrize("name", ["ria_t4_local", "ria_t4_paper"])
def test_ria_permutation_is_the_official_codes_at_paper_scale_and_per_group_locally(name):
    """RIA's numbers come from its code: one permutation per linear, LSA in 4/8/16 contiguous
    communities; the embedded models keep one per shared-input group (deployable by folding)."""
    layouts = {(c["shuffle"]["name"], c["shuffle"]["share"], c["shuffle"].get("communities"))
               for c in job_configs(name) if c["shuffle"]["name"] != "none"}  # fmt: skip
    if name.endswith("_paper"):
        assert layouts == {("ria_cp", "linear", None), ("ria_cp_lsa", "linear", "official")}
    else:
        assert layouts == {("ria_cp", "group", None), ("ria_cp_lsa", "group", None)}


def test_ria_t12_quantizes_the_pruned_model_at_4_bits_and_its_2_4_rows_fill_the_extra_cells(tmp_path):
    """Table 12 prunes first and quantizes 4-bit in groups of 128 (its plain row: no quantization);
    the 2:4 preset fills the 12 cells the paper did not run, and no unstructured cell."""
    quant = {(c["quant"]["name"], c["quant"].get("bits"), c["quant"].get("group_size"), c["quant"].get("order"))
             for c in job_configs("ria_t12_local")}  # fmt: skip
    assert quant == {("none", None, None, None), ("gptq", 4, 128, "prune_first"), ("awq", 4, 128, "prune_first")}
    cfgs = job_configs("ria_t12_nm_local")
    assert {c["pattern"]["name"] for c in cfgs} == {"2:4"}
    synthetic_records(cfgs, tmp_path / "runs")
    from analysis import records as rec_io
    from analysis.tables import paper_tables
    from analysis.tables.matching import NOT_RUN

    df = paper_tables.get("ria_t12")(rec_io.load_records(tmp_path))
    filled = df[(df["ours_model"] == "smollm2_135m") & (df["ours"] != NOT_RUN)]
    assert len(filled) == 12 and filled["row"].str.startswith("2:4").all()
