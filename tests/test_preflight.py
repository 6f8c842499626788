"""Every input that used to fail late fails here before the model loads, naming the key.

``load_model`` is replaced by a function that fails the test: a problem found after the model
loads is a problem found too late.
"""

from __future__ import annotations

import pytest
import torch
from helpers import compose_cfg, preflight_overrides

from esparse.models import hub
from esparse.run import preflight_tasks
from esparse.run.config import ConfigError
from esparse.run.pipeline import run
from esparse.run.record import pattern_label


@pytest.fixture
def overrides(tiny_model_dir, text_corpus, tmp_path, monkeypatch):
    return preflight_overrides(tiny_model_dir, text_corpus, tmp_path, monkeypatch)


def _fails(overrides: list[str], *expected: str) -> str:
    with pytest.raises(ConfigError) as e:
        run(compose_cfg(overrides))
    for text in expected:
        assert text in str(e.value)
    return str(e.value)


def test_unknown_zeroshot_task(overrides):
    _fails(overrides + ["eval.zeroshot.tasks=[nonexistent_task]"], "eval.zeroshot.tasks: 'nonexistent_task'")


def test_hub_task_with_the_hub_unusable_and_not_cached(overrides, monkeypatch):
    monkeypatch.setattr(hub, "unusable", lambda: "switched off (HF_HUB_OFFLINE is set)")
    monkeypatch.setattr(preflight_tasks, "dataset_cached", lambda repo: False)
    _fails(
        overrides + ["eval.zeroshot.tasks=[hellaswag]"], "'hellaswag' reads dataset 'Rowan/hellaswag'", "switched off"
    )


def test_piqa_local_data_dir_missing(overrides, tmp_path):
    _fails(overrides + ["eval.zeroshot.tasks=[piqa_local]", f"eval.zeroshot.data_dir={tmp_path}/no"], "data_dir")


def test_save_dir_that_cannot_be_written(overrides, tmp_path):
    (tmp_path / "a_file").write_text("x")  # a directory under a file fails for root too
    _fails(overrides + [f"save_dir={tmp_path}/a_file/ckpt"], "save_dir:", "cannot be written")
    _fails(overrides + [f"results_dir={tmp_path}/a_file/res"], "results_dir:", "cannot be written")


@pytest.mark.parametrize("device", ["cuda:7"] + ([] if torch.cuda.is_available() else ["cuda"]))
def test_device_torch_cannot_see(overrides, device):
    _fails(overrides + [f"device={device}"], f"device: {device!r} is not available", "allowed here")


def test_device_that_is_no_device(overrides):
    _fails(overrides + ["device=gpu"], "device: 'gpu' is not one of ['auto', 'cpu', 'cuda'")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("the of", "fewer tokens than one window"),
        ("", "is empty"),
        (b"\xff\xfe not utf-8", "is not UTF-8"),
    ],
)
def test_bad_calibration_file(overrides, tmp_path, content, expected):
    p = tmp_path / "cal.txt"
    if isinstance(content, bytes):
        p.write_bytes(content)
    elif content is not None:
        p.write_text(content)
    _fails(
        overrides + [f"data.wikitext2.path={p}"], "data.wikitext2.path" if content != "the of" else "seqlen", expected
    )


def test_jsonl_without_text_names_file_and_line(overrides, tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"text": "the of and"}\n\n{"body": "x"}\n')
    _fails(overrides + [f"data.wikitext2.path={p}"], f"data.wikitext2.path: {str(p)!r} line 3 has no string 'text'")


def test_short_corpus_by_tokens_fails_before_the_model(overrides, tmp_path):
    p = tmp_path / "c.txt"  # enough bytes for the byte bound, too few words (tokens) for a window
    p.write_text(" ".join(["the"] * 20 + ["x" * 40]))
    from esparse.run.data import DataUnavailableError

    with pytest.raises(DataUnavailableError, match="calibration.seqlen: 32"):
        run(compose_cfg(overrides + [f"data.wikitext2.path={p}", "stages=[prune]"]))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("calibration.seed=abc", "calibration.seed: 'abc'"),
        ("metric.bins=0", "metric.bins: 0"),
        ("model.dtype=bogus", "model.dtype: 'bogus' is not one of"),
        ("stages=[]", "stages: [] is empty"),
        ("data.wikitext2.split_percent=100", "data.wikitext2.split_percent: 100"),
        ("stages=[prune,bench] bench.backend=bogus", "bench.backend: 'bogus' is not one of"),
        ("stages=[prune,bench] bench.batch_sizes=[0]", "bench.batch_sizes: [0]"),
    ],
)
def test_typed_keys(overrides, override, key):
    _fails(overrides + override.split(), key)


def test_truncated_safetensors(overrides, tiny_model_dir):
    f = tiny_model_dir / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    _fails(overrides, "model.path:", "model.safetensors", "truncated")


def test_model_dir_with_only_config_json(overrides, tmp_path, tiny_model_dir):
    d = tmp_path / "only_config"
    d.mkdir()
    (d / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    _fails(overrides + [f"model.path={d}"], "has no tokenizer", "has no weights")


def test_hub_model_not_cached_with_the_hub_unusable(overrides, monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "unusable", lambda: "switched off (HF_HUB_OFFLINE is set)")
    monkeypatch.setattr(hub, "cached_snapshot", lambda repo: None)
    over = [o for o in overrides if not o.startswith("model.")] + ["model=llama7b"]
    _fails(over, "model.hf_id: 'huggyllama/llama-7b'", "not in the local Hugging Face cache", "model.path=")


def test_one_file_for_calibration_and_eval_is_refused_without_a_split(overrides):
    _fails(overrides + ["data.wikitext2.split_percent=null"], "used for calibration and for evaluation")


def test_summary_names_the_pattern_run_not_the_preset():
    assert pattern_label({"name": "2:4", "kind": "nm", "n": 1, "m": 4}) == "1:4"
    assert pattern_label({"name": "unstructured", "kind": "unstructured", "sparsity": 0.5}) == "unstructured"


def test_cli_prints_the_message_without_a_traceback(tmp_path):
    """exit 2, the key in the message, no traceback and no Hydra hint; HYDRA_FULL_ERROR=1 shows it."""
    import os
    import subprocess
    import sys

    from helpers import ROOT

    cmd = [sys.executable, str(ROOT / "run.py"), "stages=[]", "logger=none", f"results_dir={tmp_path}"]
    cmd += [f"hydra.run.dir={tmp_path / 'out'}"]
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "ESPARSE_DEBUG")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert "stages: [] is empty" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr and "HYDRA_FULL_ERROR" not in out.stderr
    full = subprocess.run(cmd, capture_output=True, text=True, env={**env, "HYDRA_FULL_ERROR": "1"}, timeout=120)
    assert full.returncode != 0 and "Traceback" in full.stderr and "ConfigError" in full.stderr


def test_hub_corpus_with_the_hub_unusable_and_not_cached(overrides, monkeypatch):
    monkeypatch.setattr(hub, "unusable", lambda: "unreachable (no connection)")
    monkeypatch.setattr(preflight_tasks, "dataset_cached", lambda repo: False)
    _fails(overrides + ["data.wikitext2.path=null"], "data.wikitext2.path: null", "Salesforce/wikitext", "unreachable")
