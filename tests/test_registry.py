"""The score registry decides what runs: each score's declared options, its reconstruct flag, and the
library defaults, which must equal the YAML a run reads."""

from __future__ import annotations

import inspect

import pytest
import torch

from esparse import scores
from esparse.scores import Option

#: what every score takes besides the common ``metric.reconstruct``
OPTIONS = {
    "act_norm": [],
    "esparse": ["alpha", "bins", "form", "norm"],
    "magnitude": [],
    "ri": [],
    "ria": ["a"],
    "sparsegpt": [],
    "w_in": [],
    "w_out": [],
    "wanda": [],
}


def test_each_score_declares_its_options_and_whether_it_reconstructs():
    assert {n: sorted(scores.get(n).options) for n in scores.names()} == OPTIONS
    assert [n for n in scores.names() if scores.get(n).reconstructs] == ["sparsegpt"]
    alpha, form, bins = (scores.get("esparse").options[k] for k in ("alpha", "form", "bins"))
    assert alpha.allowed() == "a positive number or 'auto'"
    assert form.allowed() == f"one of {list(scores.ESPARSE_FORMS)}"
    assert bins.allowed() == "an integer >= 2"
    assert scores.get("ria").options["a"].allowed() == "a number"


@pytest.mark.parametrize(
    ("option", "good", "bad"),
    [
        (Option("x", "number", choices=("auto",), minimum=0, exclusive=True), [70.0, 1, "auto"], [0, -1.0, "x", True]),
        (Option("x", "number"), [0.5, -2, 0], ["0.5", None, False]),
        (Option("x", "int", minimum=2), [2, 100], [1, 2.0, "2", True]),
        (Option("x", "bool"), [True, False], [0, "true", None]),
        (Option("x", "choice", choices=("p", "q")), ["p", "q"], ["r", 1, None]),
    ],
)
def test_option_problem_names_key_and_value(option, good, bad):
    for value in good:
        assert option.problem(value) is None, value
    for value in bad:
        assert option.problem(value).startswith(f"metric.x: {value!r} "), value


def test_unknown_and_missing_options_are_named():
    problems = scores.check_options("wanda", {"name": "wanda", "reconstruct": False, "alpha": 70.0})
    assert problems == ["metric.alpha: 70.0 is not an option of score 'wanda'; its options: ['reconstruct']"]
    (missing,) = scores.check_options("ria", {"name": "ria", "reconstruct": False})
    assert missing.startswith("metric.a: missing; score 'ria' takes ['a', 'reconstruct']")
    assert scores.check_options("ria", {"reconstruct": False}, complete=False) == []


def test_register_refuses_options_it_cannot_honour(monkeypatch):
    monkeypatch.setattr(scores, "_REGISTRY", dict(scores._REGISTRY))
    with pytest.raises(ValueError, match="'b' is not a keyword with a default"):
        scores.register("toy_b", options=(Option("b", "number"),))(lambda w, s, a=1.0: w)
    with pytest.raises(ValueError, match="default is not allowed"):
        scores.register("toy_neg", options=(Option("a", "number", minimum=0),))(lambda w, s, a=-1.0: w)
    with pytest.raises(ValueError, match="shadows a common key"):
        scores.register("toy_rec", options=(Option("reconstruct", "bool", kwarg=False, default=False),))
    with pytest.raises(ValueError, match="kind 'float'"):
        Option("a", "float")
    toy = scores.register("toy", options=(Option("a", "number"),))(lambda w, s, a=2.0: w * a)
    assert toy.options["a"].default == 2.0 and not toy.reconstructs  # the default is the signature's


def test_library_defaults_are_the_signatures_and_the_bare_prune_spec():
    from esparse.masks import Pattern
    from esparse.pruning import PruneSpec
    from esparse.sparsegpt import inverse_hessian_factor, sparsegpt_prune
    from esparse.stats import ChannelStats

    d = scores.library_defaults()

    def default(fn, key):
        return inspect.signature(fn).parameters[key].default

    for name in scores.names():
        for key, opt in scores.get(name).options.items():
            if opt.kwarg:
                assert default(scores.get(name), key) == d["metric"][name][key]
    rec = d["reconstruction"]
    assert default(sparsegpt_prune, "blocksize") == rec["blocksize"]
    assert default(sparsegpt_prune, "percdamp") == default(inverse_hessian_factor, "percdamp") == rec["percdamp"]
    assert default(scores.get("sparsegpt"), "percdamp") == rec["percdamp"]
    assert default(ChannelStats, "bins") == default(ChannelStats.from_inputs, "bins") == d["metric"]["esparse"]["bins"]
    bare = PruneSpec("esparse", Pattern.parse("2:4"))
    assert (bare.blocksize, bare.percdamp) == (rec["blocksize"], rec["percdamp"])
    assert (bare.bins, bare.reconstruct) == (d["metric"]["esparse"]["bins"], d["metric"]["esparse"]["reconstruct"])


def test_library_defaults_equal_the_yaml():
    """What a library caller gets without a config is what a run composed from conf/ reads."""
    from helpers import compose_cfg

    d = scores.library_defaults()
    for name in scores.names():
        cfg = compose_cfg([f"metric={name}"])
        assert {k: v for k, v in cfg["metric"].items() if k != "name"} == d["metric"][name], name
        assert cfg["reconstruction"] == d["reconstruction"]


#: a value each kind refuses, as a command-line override, and as it reaches the config
BAD = {"number": ("x", "'x'"), "int": ("1", "1"), "bool": ("maybe", "'maybe'"), "choice": ("nope", "'nope'")}
DECLARED = [
    (name, opt.name, opt.kind)
    for name in scores.names()
    for opt in (*scores.get(name).options.values(), *scores.COMMON_OPTIONS)
]


def _problems(overrides: list[str], edit=None) -> str:
    from helpers import compose_cfg

    from esparse.run.config import ConfigError, normalize, validate

    cfg = normalize(compose_cfg(overrides))
    if edit:
        edit(cfg)
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    return str(e.value)


@pytest.mark.parametrize(("score", "key", "kind"), DECLARED, ids=[f"{s}.{k}" for s, k, _ in DECLARED])
def test_validate_refuses_a_bad_value_of_each_declared_option(score, key, kind):
    override, shown = BAD[kind]
    msg = _problems([f"metric={score}", f"metric.{key}={override}"])
    allowed = ({**scores.get(score).options, **{o.name: o for o in scores.COMMON_OPTIONS}})[key].allowed()
    assert f"metric.{key}: {shown} " in msg and allowed in msg


def test_validate_refuses_an_option_the_score_does_not_take_and_a_missing_one():
    msg = _problems(["metric=wanda", "+metric.alpha=70"])
    assert "metric.alpha: 70 is not an option of score 'wanda'; its options: ['reconstruct']" in msg
    msg = _problems(["metric=ria"], edit=lambda cfg: cfg["metric"].pop("a"))
    assert "metric.a: missing; score 'ria' takes ['a', 'reconstruct']" in msg
    msg = _problems([], edit=lambda cfg: cfg["reconstruction"].pop("percdamp"))
    assert "reconstruction.percdamp: missing" in msg


def test_prune_spec_reads_every_key_from_the_config():
    from helpers import compose_cfg

    from esparse.run.calibration import prune_spec
    from esparse.run.config import ConfigError

    spec = prune_spec(compose_cfg(["metric=esparse", "metric.bins=50", "reconstruction.blocksize=64"]))
    assert dict(spec.metric_kwargs) == {"alpha": "auto", "form": "alpha_entropy", "norm": "wanda"}
    assert (spec.bins, spec.blocksize, spec.percdamp, spec.reconstruct) == (50, 64, 0.01, False)
    assert dict(prune_spec(compose_cfg(["metric=ria", "metric.a=1.0"])).metric_kwargs) == {"a": 1.0}
    cfg = compose_cfg(["metric=wanda"])
    del cfg["reconstruction"]["blocksize"]
    with pytest.raises(ConfigError, match="reconstruction.blocksize: missing"):
        prune_spec(cfg)
    with pytest.raises(ConfigError, match="metric.bins: 100 is not an option of score 'wanda'"):
        prune_spec(compose_cfg(["metric=wanda", "+metric.bins=100"]))
    cfg = compose_cfg(["metric=esparse"])
    del cfg["metric"]["alpha"]
    with pytest.raises(ConfigError, match="metric.alpha: missing"):
        prune_spec(cfg)


def test_the_reconstructs_flag_routes_pruning_through_obs(monkeypatch):
    """A score registered with reconstructs=True is pruned as SparseGPT is (OBS selection and update,
    on the Hessian it did not ask for); the same score without the flag only masks."""
    from conftest import tiny_llama

    from esparse.masks import Pattern
    from esparse.pruning import PruneSpec, _needs, prune_model

    monkeypatch.setattr(scores, "_REGISTRY", dict(scores._REGISTRY))
    scores.register("toy_obs", reconstructs=True)(lambda w, s: w.abs().float())
    scores.register("toy_mask")(lambda w, s: w.abs().float())
    calib = torch.randint(0, 128, (8, 16), generator=torch.Generator().manual_seed(0))

    def pruned(metric: str) -> dict[str, torch.Tensor]:
        model = tiny_llama()
        prune_model(model, calib, PruneSpec(metric, Pattern.parse("2:4")), progress=False)
        return model.state_dict()

    def same(a: dict, b: dict) -> bool:
        return all(torch.equal(a[k], b[k]) for k in a)

    spec = PruneSpec("toy_obs", Pattern.parse("2:4"))
    assert spec.obs_selects and spec.uses_obs and _needs(spec) == {"hessian"}
    assert _needs(PruneSpec("toy_mask", Pattern.parse("2:4"))) == frozenset()
    obs, mask = pruned("toy_obs"), pruned("toy_mask")
    assert same(obs, pruned("sparsegpt"))
    assert same(mask, pruned("magnitude")) and not same(obs, mask)
