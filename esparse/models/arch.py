"""The architecture catalogue: every configured model's shapes, read from its ``conf/model/*.yaml``.

Memory and GEMM shapes of the papers' models must be computable without their weights, so each
model config carries an ``arch:`` block (the transformers config fields that fix the shapes). This
module is the one reader of those blocks and names each architecture as its config does
(``llama2_7b``, ``opt6.7b``), the name records and tables use too. It also reads the same fields
off a loaded model's transformers config, so a record can say what it actually ran on.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from esparse.run.conf_files import conf_file, conf_names

FAMILIES = ("llama", "opt", "gemma3")

#: transformers ``model_type`` -> the family whose module layout memory accounting knows exactly
MODEL_TYPES = {
    "llama": "llama",
    "mistral": "llama",
    "opt": "opt",
    "gemma3_text": "gemma3",
    "gemma3": "gemma3",
}


def normalize_arch(arch: Mapping[str, Any]) -> dict[str, Any]:
    """Fill family defaults and validate a HF-config-like mapping; returns a plain dict."""
    family = arch.get("family")
    if family not in FAMILIES:
        raise ValueError(f"arch family={family!r} is not one of {list(FAMILIES)}")
    a = dict(arch)
    if family == "opt" and "intermediate_size" not in a:
        a["intermediate_size"] = a.get("ffn_dim")
    required = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    for key in required:
        value = a.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"arch {key}={value!r} must be a positive int")
    heads = a["num_attention_heads"]
    a["num_key_value_heads"] = int(a.get("num_key_value_heads") or heads)
    if a.get("head_dim") is None:
        if a["hidden_size"] % heads:
            raise ValueError(f"arch hidden_size={a['hidden_size']} is not divisible by heads={heads}")
        a["head_dim"] = a["hidden_size"] // heads
    if heads % a["num_key_value_heads"]:
        raise ValueError(f"arch num_key_value_heads={a['num_key_value_heads']} does not divide heads={heads}")
    a.setdefault("tie_word_embeddings", family != "llama")
    if family == "opt":
        a.setdefault("max_position_embeddings", 2048)
        a.setdefault("enable_bias", True)
        proj = a.get("word_embed_proj_dim", a["hidden_size"])
        if proj != a["hidden_size"]:
            raise ValueError(f"arch word_embed_proj_dim={proj} != hidden_size (OPT-350m layout) is not supported")
    else:
        a.setdefault("attention_bias", False)
        a.setdefault("mlp_bias", False)
    return a


def arch_from_hf_config(config: Any) -> dict[str, Any]:
    """The arch mapping of a transformers config object (a multimodal Gemma 3 uses its text part)."""
    model_type = getattr(config, "model_type", None)
    if model_type == "gemma3" and hasattr(config, "get_text_config"):
        config = config.get_text_config()
        model_type = getattr(config, "model_type", model_type)
    family = MODEL_TYPES.get(model_type)
    if family is None:
        raise ValueError(f"model_type={model_type!r} has no memory layout here; known: {sorted(MODEL_TYPES)}")
    keys = (
        "hidden_size", "intermediate_size", "ffn_dim", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings", "max_position_embeddings",
        "enable_bias", "word_embed_proj_dim", "attention_bias", "mlp_bias",
    )  # fmt: skip
    arch: dict[str, Any] = {"family": family}
    for key in keys:
        value = getattr(config, key, None)
        if value is not None:
            arch[key] = value
    if family == "opt":
        arch["intermediate_size"] = arch.pop("ffn_dim", None)
    return normalize_arch(arch)


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, dict[str, Any]]:
    out = {}
    for name in conf_names("model"):
        cfg = conf_file("model", name)
        if not isinstance(cfg.get("arch"), Mapping):
            raise ValueError(f"conf/model/{name}.yaml has no arch: block (the shapes memory and GEMM need)")
        try:
            out[cfg.get("name", name)] = normalize_arch({"family": cfg.get("family"), **cfg["arch"]})
        except ValueError as e:
            raise ValueError(f"conf/model/{name}.yaml: {e}") from None
    return out


def catalogue() -> dict[str, dict[str, Any]]:
    """Every configured model's architecture by config name, family defaults filled in."""
    return {name: dict(a) for name, a in _catalogue().items()}


def model_arch(name: str) -> dict[str, Any]:
    """The architecture of the model configured as ``conf/model/<name>.yaml``."""
    archs = _catalogue()
    if name not in archs:
        raise KeyError(f"no model config named {name!r}; known: {', '.join(archs)}")
    return dict(archs[name])


#: the fields that make two checkpoints different models (a preset's shapes must equal what loaded)
IDENTITY_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "vocab_size")  # fmt: skip


class ModelMismatchError(ValueError):
    """What loaded is not the model the config names: its numbers must not be recorded under that name."""


def check_identity(name: str, loaded: Mapping[str, Any] | None) -> None:
    """Raise :class:`ModelMismatchError` when ``name`` is a configured model (``conf/model/<name>.yaml``)
    and the architecture actually loaded differs from it, naming both; a model of another name (the
    user's ``model.name=...``) is its own claim and is not checked."""
    want = _catalogue().get(name)
    if want is None or loaded is None:
        return
    differ = {k: (want.get(k), loaded.get(k)) for k in IDENTITY_KEYS if want.get(k) != loaded.get(k)}
    if differ:
        what = ", ".join(f"{k} {w} vs {g}" for k, (w, g) in differ.items())
        raise ModelMismatchError(
            f"model={name}: the model loaded is not {name} ({what}: conf/model/{name}.yaml vs what loaded); "
            f"name yours with model.name=<name> (its records and tables then say so), or point model.path "
            f"at a copy of {name}"
        )
