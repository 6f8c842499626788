"""A record is labelled by what was loaded: a preset's name over another model is refused before any
pruning, and a checkpoint whose config and weights disagree is refused instead of half random."""

from __future__ import annotations

import json

import pytest
from helpers import compose_cfg, tiny_overrides

from esparse.models.arch import ModelMismatchError, catalogue, check_identity
from esparse.models.loading import ModelNotFoundError, load_model


def test_a_preset_name_over_another_architecture_names_both():
    smollm = catalogue()["smollm2_135m"]
    check_identity("smollm2_135m", smollm)  # itself: fine
    check_identity("my_model", {**smollm, "num_hidden_layers": 2})  # the user's own name: their claim
    with pytest.raises(ModelMismatchError, match=r"model=smollm2_135m: .*num_hidden_layers 30 vs 2.*model.name="):
        check_identity("smollm2_135m", {**smollm, "num_hidden_layers": 2})


def test_a_run_of_another_model_under_a_preset_name_fails_before_pruning(tiny_model_dir, text_corpus, tmp_path):
    from esparse.run.pipeline import run

    overrides = tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache")
    overrides = [o for o in overrides if not o.startswith(("model.name=", "model.arch."))]  # smollm2_135m's name
    with pytest.raises(ModelMismatchError, match="the model loaded is not smollm2_135m"):
        run(compose_cfg([*overrides, "metric=wanda"]))
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*.json")]
    assert rec["status"] == "failed" and "prune" not in rec["stages_done"]


def test_a_checkpoint_whose_config_says_more_layers_than_its_weights_is_refused(tiny_model_dir):
    cfg_path = tiny_model_dir / "config.json"
    config = json.loads(cfg_path.read_text())
    config["num_hidden_layers"] += 1  # one block would be randomly initialised
    cfg_path.write_text(json.dumps(config))
    with pytest.raises(ModelNotFoundError, match=r"weights do not match its config \(missing keys: model.layers"):
        load_model({"path": str(tiny_model_dir), "dtype": "float32", "source": "hub"})


def test_a_record_says_which_weights_it_ran(tiny_model_dir, text_corpus, tmp_path):
    """Two runs of one checkpoint under different names carry the same weight fingerprint; another
    checkpoint does not."""
    from esparse.run.pipeline import run

    overrides = tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache")
    a = run(compose_cfg([*overrides, "metric=magnitude", "stages=[prune]"]))["details"]["model_identity"]
    b = run(compose_cfg([*overrides, "metric=magnitude", "stages=[prune]", "model.name=renamed"]))
    assert a == {"source": str(tiny_model_dir), "files_sha256": a["files_sha256"]}
    assert b["details"]["model_identity"] == a
    (tiny_model_dir / "config.json").write_text(
        (tiny_model_dir / "config.json").read_text().replace("}", ', "x": 1}', 1)
    )
    c = run(compose_cfg([*overrides, "metric=magnitude", "stages=[prune]", "force=true"]))
    assert c["details"]["model_identity"]["files_sha256"] != a["files_sha256"]


def test_a_device_too_small_for_the_model_and_its_activations_is_refused_before_the_load(monkeypatch):
    """On a CUDA device (faked here: no GPU in the tests) the weights plus the calibration activations
    are projected against its free memory, and the message names the sizes and the ways out."""
    from esparse.run import preflight_memory

    cfg = compose_cfg(["model=llama7b", "device=cuda"])
    monkeypatch.setattr(preflight_memory, "available_device_bytes", lambda device: 16 * 10**9)
    (problem,) = preflight_memory.device_memory(cfg)
    # weights 13.5 GB (6.74e9 fp16 parameters) + activations 2 x 128 x 2048 x 4096 x 2 bytes = 4.29 GB
    assert problem.startswith("device=cuda: the model's weights (13.5 GB) and the calibration activations")
    assert "= 4.29 GB) need 17.8 GB, more than its 16 GB free; set offload=true" in problem
    assert preflight_memory.device_memory({**cfg, "offload": True}) == []  # one block at a time: 4.29 GB fits
    monkeypatch.setattr(preflight_memory, "available_device_bytes", lambda device: None)  # a CPU run
    assert preflight_memory.device_memory(cfg) == []
