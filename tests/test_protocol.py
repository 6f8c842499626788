"""The protocol follows the model: a paper model (hub LLaMA / OPT) runs the papers' protocol, the
bundled models the local one, and whatever the command line says wins."""

from __future__ import annotations

import importlib.util

import pytest
from helpers import ROOT, compose_cfg

PAPER_MODELS = ["llama7b", "llama13b", "llama30b", "llama65b", "llama2_7b", "llama2_13b", "llama2_70b",
                "opt1.3b", "opt6.7b", "opt30b"]  # fmt: skip


def _protocol(cfg: dict) -> tuple:
    cal, ppl = cfg["calibration"], cfg["eval"]["ppl"]
    return cal["name"], cal["nsamples"], cal["seqlen"], tuple(ppl["datasets"]), ppl["seqlen"], ppl["nsamples"]


@pytest.mark.parametrize("model", PAPER_MODELS)
def test_a_paper_model_runs_the_papers_protocol(model):
    cfg = compose_cfg([f"model={model}"])
    assert _protocol(cfg) == ("c4", 128, 2048, ("wikitext2",), 2048, None)
    assert cfg["calibration"]["seed"] == 0 and cfg["model"]["dtype"] == "float16"
    assert cfg["metric"]["name"] == "esparse" and cfg["metric"]["alpha"] == 70  # the paper's fixed alpha


@pytest.mark.parametrize("model", ["smollm2_135m", "gemma3_270m"])
def test_a_bundled_model_keeps_the_local_protocol(model):
    cfg = compose_cfg([f"model={model}"])
    assert _protocol(cfg) == ("bundled_wiki", 32, 512, ("bundled_wiki",), 512, 32)
    assert cfg["metric"]["alpha"] == "auto"


@pytest.mark.parametrize(
    ("overrides", "want"),
    [
        (["calibration=bundled_wiki"], ("bundled_wiki", 32, 512, ("wikitext2",), 2048, None)),
        (["eval=default"], ("c4", 128, 2048, ("bundled_wiki",), 512, 32)),
        (["calibration.nsamples=64"], ("c4", 64, 2048, ("wikitext2",), 2048, None)),
    ],
)
def test_the_command_line_wins(overrides, want):
    assert _protocol(compose_cfg(["model=llama7b", *overrides])) == want
    assert compose_cfg(["model=llama7b", "metric.alpha=auto"])["metric"]["alpha"] == "auto"


def _run_module():
    spec = importlib.util.spec_from_file_location("esparse_run_entry", ROOT / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_each_run_names_its_protocol_and_where_it_came_from():
    line = _run_module().protocol_line
    paper = compose_cfg(["model=llama7b"])
    assert line(paper, ["model=llama7b"]) == (
        "protocol: calibration c4 128×2048 (seed 0), perplexity on wikitext2 (eval split, all×2048 tokens), "
        "float16 on auto (the papers' protocol, as model=llama7b selects; calibration=/eval= override it)"
    )
    assert line(compose_cfg([]), []).endswith("(the local protocol of the embedded models)")
    assert line(compose_cfg(["model=llama7b", "eval=default"]), ["model=llama7b", "eval=default"]).endswith(
        "(the command line sets it)"
    )
    preset = compose_cfg(["+experiment=esparse_t1_paper"])
    assert line(preset, ["+experiment=esparse_t1_paper"]).endswith("(preset esparse_t1_paper)")
