"""Compose real configs from conf/ the way run.py does (no subprocess)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]


def compose_cfg(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def tiny_overrides(model_dir: Path, corpus: Path, results: Path, cache: Path) -> list[str]:
    """A complete run on a tiny random model and a local text file: seconds on CPU."""
    return [
        f"model.path={model_dir}",
        "model.name=tiny_llama",
        "model.source=hub",
        "model.context_length=256",
        "model.arch.hidden_size=32",
        "model.arch.intermediate_size=64",
        "model.arch.num_attention_heads=4",
        "model.arch.head_dim=8",
        "calibration=wikitext2",
        f"data.wikitext2.path={corpus}",
        "data.wikitext2.split_percent=50",  # one file for calibration and eval: half its lines each
        "calibration.nsamples=4",
        "calibration.seqlen=32",
        "calibration.batch_size=2",
        "eval.ppl.datasets=[wikitext2]",
        "eval.ppl.seqlen=32",
        "eval.ppl.nsamples=4",
        "logger=none",
        "progress=false",
        f"results_dir={results}",
        f"paths.cache_dir={cache}",
    ]


def tiny_cfg(model_dir: Path, corpus: Path, tmp_path: Path) -> dict:
    """The composed config of a tiny run (``tiny_overrides``) writing under ``tmp_path`` (results/, cache/)."""
    return compose_cfg(tiny_overrides(model_dir, corpus, tmp_path / "results", tmp_path / "cache"))


def record_path_of(cfg: dict) -> Path:
    """Where a run of ``cfg`` writes its record."""
    from esparse.records import hashing, store
    from esparse.run.config import normalize

    c = normalize(cfg)
    return store.record_path(c["results_dir"], hashing.config_hash(c))


def preflight_overrides(model_dir: Path, corpus: Path, tmp_path: Path, monkeypatch) -> list[str]:
    """``tiny_overrides`` under ``tmp_path``, with ``esparse.models.load_model`` replaced by a function
    that fails the test: a problem found after the model loads is a problem found too late."""
    import esparse.models as models

    def too_late(*a, **k):
        raise AssertionError("the model was loaded before the problem was found")

    monkeypatch.setattr(models, "load_model", too_late)
    return tiny_overrides(model_dir, corpus, tmp_path / "results", tmp_path / "cache")


def wandb_history(run_file: Path) -> list[dict[str, str]]:
    """The history steps of an offline W&B run file (``run-<id>.wandb``): its records are W&B's
    protobuf ``Record``s in LevelDB's log framing (32 KiB blocks, 7-byte chunk headers), after a
    7-byte ``:W&B`` file header. Read here, not with wandb (0.31 reads them in its Go core only)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", f"{run_file} is not a W&B run file"
    pos, block, part, chunks = 7, 32768, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (kind == 0 and length == 0):  # block trailer / padding
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        part = chunk if kind in (1, 2) else part + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            chunks.append(part)
    steps = []
    for raw in chunks:
        rec = pb.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") == "history":
            steps.append({i.key or "/".join(i.nested_key): i.value_json for i in rec.history.item})
    return steps
