"""A run whose later stage fails keeps its finished stages; the same command resumes after them."""

from __future__ import annotations

import json

import pytest
from helpers import compose_cfg, tiny_overrides

from esparse.records import hashing, resume, store
from esparse.run.config import normalize
from esparse.run.pipeline import run


def _cfg(tiny_model_dir, text_corpus, root, extra=()):
    return compose_cfg(tiny_overrides(tiny_model_dir, text_corpus, root / "results", root / "cache") + list(extra))


def test_failed_eval_keeps_the_prune_and_the_rerun_does_not_redo_it(tiny_model_dir, text_corpus, tmp_path, monkeypatch):
    import esparse.pruning as pruning
    import esparse.run.pipeline as pipeline

    extra = ["metric=sparsegpt", "pattern=2:4"]  # weights updated, not only masked: the cache must hold them
    reference = run(_cfg(tiny_model_dir, text_corpus, tmp_path / "ref", extra))
    cfg = _cfg(tiny_model_dir, text_corpus, tmp_path / "run", extra)
    c = normalize(cfg)
    keep = resume.cache_dir(tmp_path / "run" / "cache", hashing.config_hash(c))
    assert not (tmp_path / "ref" / "cache" / "resume" / reference["config_hash"]).exists()  # done: cleaned up

    real_ppl = pipeline._ppl

    def failing_pruned_eval(cfg, model, windows, desc):
        if not desc.startswith("dense"):
            raise RuntimeError("injected eval failure")
        return real_ppl(cfg, model, windows, desc)

    monkeypatch.setattr(pipeline, "_ppl", failing_pruned_eval)
    with pytest.raises(RuntimeError, match="injected"):
        run(cfg)
    failed = json.loads(store.record_path(c["results_dir"], hashing.config_hash(c)).read_text())
    assert failed["status"] == "failed" and failed["stages_done"] == ["prune"]
    assert failed["metrics"]["sparsity/actual"] == pytest.approx(0.5)
    assert (keep / resume.WEIGHTS).is_file()

    monkeypatch.setattr(pipeline, "_ppl", real_ppl)
    monkeypatch.setattr(pruning, "prune_model", lambda *a, **k: pytest.fail("prune redone"))
    done = run(cfg)
    assert done["status"] == "done" and done["stages_done"] == ["prune", "eval"]
    assert done["resumed"]["kept"] == ["prune"]
    for key in ("ppl/wikitext2", "sparsity/actual", "permutation/retained_after"):
        assert done["metrics"][key] == reference["metrics"][key]  # bit-identical to the uninterrupted run
    assert done["details"]["layers"] == reference["details"]["layers"]
    assert not keep.exists()  # done: the kept weights are removed


def test_kept_state_is_the_whole_model_at_its_dtype(tiny_model, tmp_path):
    unique = {t.data_ptr(): t for t in tiny_model.state_dict().values()}  # tied weights are stored once
    n_bytes = sum(t.numel() * t.element_size() for t in unique.values())
    size = resume.save(tmp_path / "k", tiny_model, "h", {"x": [1, 0]})
    assert n_bytes <= size <= n_bytes + 64 * 1024  # tensors + header + permutations
    assert resume.load(tmp_path / "k", tiny_model, "other-hash") is None
    assert resume.load(tmp_path / "k", tiny_model, "h") == {"x": [1, 0]}
