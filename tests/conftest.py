"""Shared fixtures: tiny random models (unit tests only) and a tiny word-level tokenizer."""

from __future__ import annotations

import pytest
import torch

WORDS = (  # noqa: SIM905 (one readable line of words)
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have "
    "an they you were her she there been one all we their has would when if so no will more can its out into up"
).split()


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )


def tiny_llama(seed: int = 0, vocab: int = 128, **config):
    """A 2-block random LLaMA (tests only: random weights exercise code paths, never a number);
    ``config`` overrides LlamaConfig fields."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    fields = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(LlamaConfig(**{**fields, **config})).eval()


def tiny_opt(seed: int = 0, vocab: int = 128):
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(seed)
    cfg = OPTConfig(
        vocab_size=vocab,
        hidden_size=32,
        ffn_dim=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=256,
        word_embed_proj_dim=32,
        dropout=0.0,
        attention_dropout=0.0,
    )
    return OPTForCausalLM(cfg).eval()


@pytest.fixture(params=["llama", "opt"])
def tiny_model(request):
    return tiny_llama() if request.param == "llama" else tiny_opt()


@pytest.fixture
def tokenizer():
    return make_tokenizer()


@pytest.fixture
def text_corpus(tmp_path):
    """A small word-salad text file from the tokenizer's vocabulary (deterministic)."""
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, len(WORDS), (6000,), generator=g).tolist()
    lines = [" ".join(WORDS[i] for i in idx[k : k + 12]) for k in range(0, len(idx), 12)]
    p = tmp_path / "corpus.txt"
    p.write_text("\n".join(lines))
    return p


@pytest.fixture
def tiny_model_dir(tmp_path, tokenizer):
    """A save_pretrained dir of a tiny random LLaMA + tokenizer, loadable through model.path."""
    d = tmp_path / "tiny_llama"
    tiny_llama(vocab=len(tokenizer)).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d
