"""The user's headline commands, for real, offline: ``run.py -m model=llama7b,llama13b
metric=esparse,wanda,ria`` (a paper model runs the papers' protocol: C4 128×2048 calibration,
WikiText-2 over 2048-token windows, fp16, E-Sparse's α = 70) and a ``_paper`` preset, end to end on
the CPU, then the tables, which place each record in its paper cell or say why not.

The hub is replaced by a hub-shaped local cache (``huggingface_hub``'s layout, ``HF_HUB_OFFLINE=1``)
holding tiny *random* LLaMA models under the exact hub ids of ``llama7b`` and ``llama13b``, and the
C4 / WikiText-2 corpora by tiny local word-salad files through ``data.<corpus>.path``. Random
weights are fine: only the code path (config groups, hub resolution, fp16 pruning and evaluation,
records, tables) is under test here, not the numbers.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import WORDS, make_tokenizer, tiny_llama
from helpers import ROOT

HUB_IDS = {"llama7b": "huggyllama/llama-7b", "llama13b": "huggyllama/llama-13b"}


def hub_cache(root: Path) -> Path:
    """``<root>/models--<org>--<name>/{refs/main, snapshots/<sha>/...}`` for every id in HUB_IDS."""
    tok = make_tokenizer()
    for i, hf_id in enumerate(HUB_IDS.values()):
        sha = f"{i:040x}"
        repo = root / f"models--{hf_id.replace('/', '--')}"
        snap = repo / "snapshots" / sha
        model = tiny_llama(i, len(tok), num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=False)
        model.save_pretrained(snap)
        tok.save_pretrained(snap)
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(sha)
    return root


def word_salad(path: Path, words: int, seed: int) -> Path:
    g = random.Random(seed)
    lines = [" ".join(g.choice(WORDS) for _ in range(12)) for _ in range(words // 12)]
    path.write_text("\n".join(lines))
    return path


def _run(args: list[str], tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "run.py"), *args, f"results_dir={tmp / 'results'}"]
    cmd += [f"hydra.sweep.dir={tmp / 'multirun'}", "progress=false"]
    out = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.slow
def test_headline_commands_offline_fp16_on_cpu(tmp_path):
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(hub_cache(tmp_path / "hub")),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
    }
    env.pop("HYDRA_FULL_ERROR", None)
    c4 = word_salad(tmp_path / "c4.txt", 300_000, seed=1)  # 128 x 2048 calibration tokens
    wiki = word_salad(tmp_path / "wikitext2.txt", 7_000, seed=2)
    corpora = [f"data.c4.path={c4}", f"data.wikitext2.path={wiki}"]  # the hub's corpora, offline

    card = _run(["-m", "model=llama7b,llama13b", "metric=esparse,wanda,ria", *corpora], tmp_path, env)
    assert "protocol: calibration c4 128×2048 (seed 0), perplexity on wikitext2" in card.stdout
    paper = ["-m", "+experiment=esparse_t1_paper", "model=llama7b", "+experiment/arm=wanda", "pattern=2:4"]
    paper += ["device=cpu", *corpora]
    _run(paper, tmp_path, env)

    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*.json")]
    pruned = [r for r in records if r["config"]["pattern"]["kind"] != "dense"]
    assert all(r["status"] == "done" for r in records)
    got = {
        (r["config"]["model"]["name"], r["config"]["metric"]["name"], r.get("config", {}).get("experiment"))
        for r in pruned
    }
    want = {(m, s, None) for m in HUB_IDS for s in ("esparse", "wanda", "ria")} | {
        ("llama7b", "wanda", "esparse_t1_paper")
    }
    assert got == want
    for r in pruned:
        assert r["config"]["model"]["dtype"] == "float16"  # as the paper configs say
        assert r["config"]["calibration"]["name"] == "c4" and r["config"]["calibration"]["nsamples"] == 128
        assert "ppl/wikitext2" in r["metrics"] and r["config"]["eval"]["ppl"]["seqlen"] == 2048
        if r["config"]["metric"]["name"] == "esparse":
            assert (r["config"]["metric"]["alpha"], r["config"]["metric"]["norm"]) == (70, "l2")  # the paper's text
        assert r["metrics"]["sparsity/actual"] == pytest.approx(0.5) and r["metrics"]["sparsity/pattern_ok"]
        ppl = [k for k in r["metrics"] if k.startswith("ppl/")]
        assert ppl and all(r["metrics"][k] > 1 for k in ppl)
        assert r["details"]["loaded_arch"]["hidden_size"] == 32  # the tiny stand-in, resolved by hub id
    paper_rec = next(r for r in pruned if r["config"]["experiment"] == "esparse_t1_paper")
    assert "ppl/wikitext2" in paper_rec["metrics"] and paper_rec["config"]["calibration"]["name"] == "c4"

    tables = tmp_path / "tables"
    for cmd in (["tables"], ["runs"]):
        out = subprocess.run(
            [sys.executable, "-m", "analysis", *cmd, "--results", str(tmp_path / "results"), "--out", str(tables)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
    runs_md = (tables / "runs.md").read_text()
    assert all(r["config_hash"] in runs_md for r in pruned)
    # each of the card's records in the paper cells it belongs to, or named with the reason it is in none
    card_recs = {(r["config"]["model"]["name"], r["config"]["metric"]["name"]): r["config_hash"]
                 for r in pruned if r["config"]["experiment"] is None}  # fmt: skip
    import pandas as pd

    def holder(table: str, row: str, column: str) -> str:
        csv = pd.read_csv(tables / f"{table}.csv", keep_default_na=False)
        return str(csv[(csv["row"] == row) & (csv["column"] == column)]["config_hash"].item())

    for model, column in (("llama7b", "LLaMA-7B"), ("llama13b", "LLaMA-13B")):
        assert holder("esparse_ablation", "norm + entropy", column) == card_recs[(model, "esparse")]
    # LLaMA-7B's Wanda cells show the newer preset record of the same cell; LLaMA-13B's the card's
    assert holder("esparse_ablation", "norm (= Wanda)", "LLaMA-13B") == card_recs[("llama13b", "wanda")]
    assert holder("esparse_t1", "Wanda, 2:4", "LLaMA-13B") == card_recs[("llama13b", "wanda")]
    unplaced = (tables / "index.md").read_text().split("## Finished records placed in no table", 1)[1]
    placed = " ".join(
        " ".join(pd.read_csv(p, keep_default_na=False)["config_hash"].astype(str)) for p in tables.glob("*.csv")
    ).split()
    for (model, metric), h in card_recs.items():  # every record in a cell, or named with its reason
        assert h in placed or f"`{h}` {model} {metric} 2:4 `none` seed 0: " in unplaced, (model, metric, unplaced)
    assert card_recs[("llama7b", "ria")] in placed and card_recs[("llama13b", "ria")] in placed
