"""No existing config changes its hash: later keys are hash-neutral while they hold their default.

``data/config_hashes.json`` holds the hash of every config group option and preset as composed
before the hash-neutral keys (``data.<corpus>.split_percent``, ``eval.zeroshot.data_dir: null``)
were added; every committed reference record's config must keep the hash it had. The two Gemma
configs changed on purpose when its GGUF became the one joined from the chunk packages (its file
name and sha256 are part of the model config); no record of them existed. The three OPT configs
changed on purpose when their ``arch.tie_word_embeddings`` was corrected to true (OPTForCausalLM
ties its lm_head to the embeddings; the architecture catalogue counts memory from these blocks); no
record of them existed either. The presets changed on purpose when their name (``experiment``)
became a label hashed as null: a preset and the plain overrides that compose the same
configuration now share one record. RIA Table 2's presets changed on purpose when they began ranking
over the whole layer (``pattern.scope: layer``, RIA's code); no record of them existed. The bare
paper models (``model=llama7b``, ...) changed on purpose when a paper model began to run the papers'
protocol (C4 calibration, WikiText-2 over 2048-token windows) unless the command line says otherwise;
no record of them existed (every paper-scale run so far named its protocol or preset). They changed
again, on purpose, when a paper model began to read E-Sparse's ||X_j|| as the paper's text defines it
(``model.esparse_norm: l2``) and RIA's channel permutation as its official code (``model.ria_share:
linear``, ``model.ria_communities: official``); still no record of them existed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import ROOT, compose_cfg

from esparse.records.hashing import config_hash
from esparse.run.config import normalize

EXPECTED = json.loads((Path(__file__).parent / "data" / "config_hashes.json").read_text())


@pytest.mark.parametrize("overrides", sorted(EXPECTED))
def test_composed_config_keeps_its_hash(overrides):
    cfg = normalize(compose_cfg([] if overrides == "(default)" else overrides.split()))
    cfg["device"] = "cpu"
    assert config_hash(cfg) == EXPECTED[overrides]


def test_reference_record_configs_keep_their_hash():
    """A record made under the lock is named by the hash of its stored config. The older ones keep
    the hash the code before the hash-neutral keys gave them (two of those stored configs were
    rewritten after hashing, so their file name is not the key), except the four records of the
    zero-shot preset: they now hash without their preset label, under a name they were not made with
    (a record is never renamed or edited)."""
    expected = json.loads((Path(__file__).parent / "data" / "record_config_hashes.json").read_text())
    for p in sorted((ROOT / "results" / "reference" / "runs").glob("*.json")):
        rec = json.loads(p.read_text())
        if (rec["env"].get("lock") or {}).get("sha256"):
            assert config_hash(rec["config"]) == p.stem, p.name
        else:
            assert config_hash(rec["config"]) == expected[p.stem], p.name


def test_new_keys_change_the_hash_only_when_set():
    base = normalize(compose_cfg(["data.wikitext2.path=/x.txt"]))
    split = normalize(compose_cfg(["data.wikitext2.path=/x.txt", "data.wikitext2.split_percent=20"]))
    piqa = normalize(compose_cfg(["eval.zeroshot.data_dir=/elsewhere"]))
    assert len({config_hash(base), config_hash(split), config_hash(piqa)}) == 3


def test_tie_break_is_hashed_only_off_its_default():
    """The default rule and the seed of a rule that ignores it leave the hash as before the knob."""

    def h(*overrides: str) -> str:
        return config_hash(normalize(compose_cfg(list(overrides))))

    assert h() == h("pattern.tie_break=low_index", "pattern.tie_seed=7")
    assert h("pattern.tie_break=high_index") == h("pattern.tie_break=high_index", "pattern.tie_seed=3")
    hashes = {h(), h("pattern.tie_break=high_index"), h("pattern.tie_break=random")}
    hashes.add(h("pattern.tie_break=random", "pattern.tie_seed=1"))
    assert len(hashes) == 4


def test_a_preset_name_is_a_label_not_part_of_the_hash():
    plain = normalize(compose_cfg(["pattern=4:8"]))
    preset = normalize(compose_cfg(["+experiment=esparse_t1_local", "pattern=4:8"]))
    assert preset["experiment"] == "esparse_t1_local"
    assert config_hash(preset) == config_hash(plain)


def test_bench_keys_moved_into_the_yaml_change_the_hash_only_when_set():
    """device, memory_dtype_bytes, e2e_batch_sizes, prompt_len and gen_len had Python defaults until
    conf/bench/default.yaml held them: at those values they leave the hash as it was."""
    base = normalize(compose_cfg([]))
    assert base["bench"]["prompt_len"] == 128 and base["bench"]["e2e_batch_sizes"] == [1, 8, 16, 64]
    without = {**base, "bench": {k: v for k, v in base["bench"].items() if k not in ("prompt_len", "gen_len")}}
    assert config_hash(without) == config_hash(base)
    assert config_hash(normalize(compose_cfg(["bench.prompt_len=64"]))) != config_hash(base)
    assert config_hash(normalize(compose_cfg(["bench.e2e_batch_sizes=[1]"]))) != config_hash(base)


@pytest.mark.parametrize(
    "preset, points",
    [
        ("scores_local", [["+experiment/arm=" + a, "pattern=" + p] for a in
                          ("magnitude", "ri", "wanda", "ria", "esparse", "esparse_paper", "esparse_norm70",
                           "sparsegpt", "wanda_rec", "ria_rec") for p in ("2:4", "4:8")]),
        ("shuffles_local", [[f"metric={m}", f"shuffle={s}", f"pattern={p}"] for m in ("wanda", "ria", "esparse")
                            for s in ("esparse_global", "esparse", "ria_cp", "ria_cp_lsa") for p in ("2:4", "4:8")]
                           + [[f"metric={m}", "shuffle=lsa_relabel", "pattern=2:4"]
                              for m in ("wanda", "ria", "esparse")]),
    ],
)  # fmt: skip
def test_the_headline_presets_seed_0_points_are_the_committed_records(preset, points):
    """The results page's sweeps as presets: at seed 0 every point composes to a committed reference record,
    so the preset resumes them instead of running them again (the label is not in the hash)."""
    have = {p.stem for p in (ROOT / "results" / "reference" / "runs").glob("*.json")}
    for over in points:
        cfg = normalize(compose_cfg([f"+experiment={preset}", *over, "calibration.seed=0"]))
        cfg["device"] = "cpu"
        assert config_hash(cfg) in have, over


def test_esparse_norm_is_hashed_only_off_its_default():
    """Every E-Sparse record before the knob used Wanda's convention: it keeps its name."""
    base = normalize(compose_cfg(["metric=esparse"]))
    same = normalize(compose_cfg(["metric=esparse", "metric.norm=wanda"]))
    l2 = normalize(compose_cfg(["metric=esparse", "metric.norm=l2"]))
    assert config_hash(base) == config_hash(same) == EXPECTED["(default)"] != config_hash(l2)


def test_shuffle_share_is_hashed_only_off_its_default():
    base = normalize(compose_cfg(["shuffle=ria_cp_lsa"]))
    del base["shuffle"]["share"]  # as a record made before the knob stored it
    group = normalize(compose_cfg(["shuffle=ria_cp_lsa"]))
    linear = normalize(compose_cfg(["shuffle=ria_cp_lsa", "shuffle.share=linear"]))
    assert config_hash(base) == config_hash(group) != config_hash(linear)
