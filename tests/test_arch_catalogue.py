"""The architecture catalogue: read from conf/model/*.yaml, named as the configs name the models.

The expected numbers are written by hand from the published model configs (and the yaml files
that copy them), not computed from the catalogue itself.
"""

from __future__ import annotations

import pytest

from esparse.models.arch import catalogue, model_arch
from esparse.run.conf_files import conf_names


def test_every_model_config_has_an_architecture_under_its_config_name():
    assert sorted(catalogue()) == conf_names("model")
    assert "llama2_7b" in catalogue() and "llama2-7b" not in catalogue()


@pytest.mark.parametrize(
    ("name", "hidden", "layers", "inter", "heads", "kv_heads", "vocab", "tied"),
    [
        ("llama7b", 4096, 32, 11008, 32, 32, 32000, False),
        ("llama65b", 8192, 80, 22016, 64, 64, 32000, False),
        ("llama2_70b", 8192, 80, 28672, 64, 8, 32000, False),
        ("opt6.7b", 4096, 32, 16384, 32, 32, 50272, True),  # OPTForCausalLM ties lm_head to the embeddings
        ("smollm2_135m", 576, 30, 1536, 9, 3, 49152, True),
    ],
)
def test_catalogue_numbers_by_hand(name, hidden, layers, inter, heads, kv_heads, vocab, tied):
    a = model_arch(name)
    assert (a["hidden_size"], a["num_hidden_layers"], a["intermediate_size"]) == (hidden, layers, inter)
    assert (a["num_attention_heads"], a["num_key_value_heads"], a["vocab_size"]) == (heads, kv_heads, vocab)
    assert a["tie_word_embeddings"] is tied
    assert a["head_dim"] == hidden // heads


def test_family_defaults_are_filled_and_copies_are_independent():
    opt = model_arch("opt30b")
    assert (opt["family"], opt["max_position_embeddings"], opt["enable_bias"]) == ("opt", 2048, True)
    llama = model_arch("llama13b")
    assert (llama["family"], llama["attention_bias"], llama["mlp_bias"]) == ("llama", False, False)
    llama["hidden_size"] = 1
    assert model_arch("llama13b")["hidden_size"] == 5120


def test_unknown_model_names_the_known_ones():
    with pytest.raises(KeyError, match="llama2-7b.*known: .*llama2_7b"):
        model_arch("llama2-7b")
