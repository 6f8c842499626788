"""Bad input gets one clear error naming the key and value, before any model is loaded."""

from __future__ import annotations

import pytest
from helpers import compose_cfg

from esparse.run.config import ConfigError, normalize, validate


def _errors(overrides: list[str]) -> str:
    cfg = normalize(compose_cfg(overrides))
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    return str(e.value)


def test_default_config_is_valid():
    validate(normalize(compose_cfg([])))


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["pattern.n=4", "pattern.m=4"], "pattern"),
        (["pattern.n=5"], "pattern"),
        (["pattern=unstructured", "pattern.sparsity=1.0"], "sparsity"),
        (["pattern=unstructured", "pattern.sparsity=-0.1"], "sparsity"),
        (["metric.name=entropy_magic"], "metric.name: 'entropy_magic'"),
        (["calibration.name=imagenet"], "calibration.name: 'imagenet'"),
        (["eval.ppl.datasets=[wikitext3]"], "eval.ppl.datasets: 'wikitext3'"),
        (["calibration.seqlen=9000"], "calibration.seqlen: 9000 exceeds"),
        (["eval.ppl.seqlen=9000"], "eval.ppl.seqlen: 9000 exceeds"),
        (["calibration.nsamples=0"], "calibration.nsamples: 0"),
        (["model.arch.intermediate_size=1538"], "intermediate_size=1538"),
        (["model.path=/nonexistent/dir"], "model.path"),
        (["stages=[prune,evaluate]"], "stages: 'evaluate'"),
        (["metric.form=beta"], "metric.form: 'beta'"),
        (["metric.alpha=-1"], "metric.alpha: -1"),
        (["metric.norm=l3"], "metric.norm: 'l3'"),
        (["shuffle=ria_cp_lsa", "shuffle.share=block"], "shuffle.share: 'block' is not one of ['group', 'linear']"),
        (["pattern.tie_break=coin"], "pattern.tie_break/tie_seed ('coin'"),
        (["pattern.tie_break=random", "pattern.tie_seed=0.5"], "tie_seed must be an integer, got 0.5"),
        (["eval.zeroshot.tasks=[piqa_local]", "eval.zeroshot.batch_size=0"], "eval.zeroshot.batch_size"),
    ],
)
def test_each_rule_names_key_and_value(overrides, expected):
    assert expected in _errors(overrides)


def test_m_must_divide_in_features():
    msg = _errors(["pattern.n=2", "pattern.m=7"])
    assert "pattern.m: 7 does not divide model.arch.hidden_size=576" in msg


def test_all_problems_reported_at_once():
    msg = _errors(["calibration.nsamples=0", "metric.name=nope"])
    assert "calibration.nsamples" in msg and "metric.name" in msg


def test_unknown_model_is_a_hydra_error():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="llama9b"):
        compose_cfg(["model=llama9b"])


def test_dense_normalizes_away_pruning_knobs():
    a = normalize(compose_cfg(["pattern=dense", "metric=wanda"]))
    b = normalize(compose_cfg(["pattern=dense", "metric=esparse"]))
    assert a == b and a["metric"] == {"name": "dense"} and "prune" not in a["stages"]


def test_integral_and_float_exponents_are_one_record():
    from esparse.records.hashing import config_hash

    a = normalize(compose_cfg(["metric=esparse", "metric.alpha=70"]))
    b = normalize(compose_cfg(["metric=esparse", "metric.alpha=70.0"]))
    c = normalize(compose_cfg(["metric=esparse", "metric.alpha=71"]))
    assert a["metric"]["alpha"] == 70.0 and isinstance(a["metric"]["alpha"], float)
    assert config_hash(a) == config_hash(b) != config_hash(c)
    assert normalize(compose_cfg(["metric=ria", "metric.a=1"]))["metric"]["a"] == 1.0
    assert normalize(compose_cfg(["metric=esparse"]))["metric"]["alpha"] == "auto"
