"""``make gpu-check``'s CPU path (``--dry-run``): the command a GPU session runs works end to end and
writes bench records of the one schema; no number in it is a GPU measurement."""

from __future__ import annotations

import importlib.util
import json

from helpers import ROOT


def test_gpu_check_dry_run_writes_every_record(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--dry-run", "--out", str(tmp_path)]) == 0
    gemm = json.loads((tmp_path / "gemm_cpu-dry-run.json").read_text())
    assert gemm["kind"] == "gemm" and {r["model"] for r in gemm["rows"]} == {"llama7b", "llama13b"}
    assert not any(r["available"] for r in gemm["rows"])  # no 2:4 kernel on a CPU, and no speedup claimed
    assert not any("speedup" in r for r in gemm["rows"])
    masks = json.loads((tmp_path / "device_masks_cpu-dry-run.json").read_text())
    assert masks["kind"] == "device_masks" and len(masks["rows"]) == 4
    for r in masks["rows"]:  # the same device twice: every decision equal, every pattern exact
        assert r["differing"] == 0 and r["agreement"] == 1.0 and r["pattern_ok"]
    offload = json.loads((tmp_path / "offload_memory_cpu-dry-run.json").read_text())
    assert offload["kind"] == "prune_memory" and offload["config"]["dry_run"] is True
    assert [r["placement"] for r in offload["rows"]] == ["on_device", "offload", "offload_activations_on_cpu"]
    for r in offload["rows"]:  # no accelerator on a CPU: no device peak is claimed; the projection still is
        assert r["device_peak_gb_prune"] is None and r["projected_device_bytes"] > 0 and r["host_peak_gb_prune"] > 0
    assert offload["rows"][0]["projected_device_bytes"] > offload["rows"][1]["projected_device_bytes"]
    assert "wrote" in capsys.readouterr().out
