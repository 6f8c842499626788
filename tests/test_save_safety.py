"""The user's model and the prune are never lost to a checkpoint: save_dir may not be the model, the
records or a foreign directory (refused before the model loads), a checkpoint is written whole or not
at all, the cache dir is checked before the load, and a resume copy that cannot be written costs only
the resume."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_llama
from helpers import compose_cfg, tiny_overrides

from esparse.checkpoint import SIDECAR, save_pruned
from esparse.records import store
from esparse.run import preflight
from esparse.run.config import ConfigError
from esparse.run.pipeline import run


@pytest.fixture
def overrides(tiny_model_dir, text_corpus, tmp_path):
    return tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache")


@pytest.fixture
def no_load(monkeypatch):
    import esparse.models as models

    def too_late(*a, **k):
        raise AssertionError("the model was loaded before the problem was found")

    monkeypatch.setattr(models, "load_model", too_late)


def _refused(overrides, *expected) -> str:
    with pytest.raises(ConfigError) as e:
        run(compose_cfg(overrides))
    for text in expected:
        assert text in str(e.value), str(e.value)
    return str(e.value)


def test_save_dir_that_is_the_model_or_inside_it_is_refused(overrides, tiny_model_dir, no_load):
    before = sorted(p.name for p in tiny_model_dir.iterdir())
    for target in (tiny_model_dir, tiny_model_dir / "pruned"):
        _refused(
            overrides + [f"save_dir={target}"],
            f"save_dir: '{target}' is model.path '{tiny_model_dir}' or inside it",
            "would overwrite the model it is pruned from",
        )
    assert sorted(p.name for p in tiny_model_dir.iterdir()) == before


def test_save_dir_in_the_records_is_refused(overrides, tmp_path, no_load):
    runs = tmp_path / "results" / "runs"
    _refused(overrides + [f"save_dir={runs}"], f"save_dir: '{runs}' is '{runs}' (results_dir/runs")
    _refused(overrides + [f"save_dir={runs}/ckpt"], f"save_dir: '{runs}/ckpt' is '{runs}'")


def test_a_non_empty_directory_that_is_no_checkpoint_is_refused(overrides, tmp_path, no_load):
    mine = tmp_path / "my_stuff"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    _refused(
        overrides + [f"save_dir={mine}"],
        f"save_dir: '{mine}' is a non-empty directory that is not an esparse checkpoint (no esparse.json)",
    )
    assert (mine / "thesis.tex").read_text() == "years of work"
    ckpt = tmp_path / "old_ckpt"
    ckpt.mkdir()
    (ckpt / SIDECAR).write_text("{}")
    assert preflight.save_dir_safe(compose_cfg(overrides + [f"save_dir={ckpt}"])) == []  # an earlier one: replaced


def test_a_cache_dir_that_cannot_be_written_is_refused_before_the_load(overrides, tmp_path, no_load):
    (tmp_path / "a_file").write_text("x")
    _refused(overrides + [f"paths.cache_dir={tmp_path}/a_file/cache"], "paths.cache_dir:", "cannot be written")


def test_a_checkpoint_that_fails_half_way_leaves_nothing_and_keeps_the_old_one(tmp_path, tokenizer, monkeypatch):
    model = tiny_llama(vocab=len(tokenizer))
    cfg = {"pattern": {"name": "2:4"}, "metric": {"name": "wanda"}, "shuffle": {"name": "none"}}
    cfg["model"] = {"name": "tiny"}
    ckpt = tmp_path / "ckpt"
    save_pruned(model, tokenizer, ckpt, cfg, "h1")
    first = {p.name: p.read_bytes() for p in ckpt.iterdir()}

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(tokenizer), "save_pretrained", disk_full)  # after the weights were written
    with pytest.raises(OSError, match="No space left"):
        save_pruned(model, tokenizer, ckpt, cfg, "h2")
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == first  # the complete earlier checkpoint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary sibling left
    with pytest.raises(OSError, match="No space left"):
        save_pruned(model, tokenizer, tmp_path / "new", cfg, "h3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no half checkpoint
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    refused = pytest.raises(FileExistsError, match="not an empty directory or one holding esparse.json")
    with refused, store.staged_dir(foreign, SIDECAR):
        pass
    assert (foreign / "keep.txt").read_text() == "x"


def test_a_resume_copy_that_cannot_be_written_costs_only_the_resume(overrides, monkeypatch, caplog):
    from esparse.records import resume

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(resume, "save", disk_full)
    rec = run(compose_cfg(overrides))
    assert rec["status"] == "done" and "ppl/wikitext2" in rec["metrics"]
    assert rec["details"]["resume_cache_error"] == "OSError: [Errno 28] No space left on device"
    assert "resume copy not written" in caplog.text
    assert (
        json.loads(store.record_path(rec["config"]["results_dir"], rec["config_hash"]).read_text())["status"] == "done"
    )
