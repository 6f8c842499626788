"""Perplexity without full-vocabulary logits: the chunked head equals the model's own logits (tiny
random models, tests only), a family transform after the head is reproduced or refused, and a
uniform model scores exactly its vocabulary size."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_llama

from esparse.evaluation import head as H
from esparse.evaluation import ppl as P


def _windows(vocab: int, n: int = 3, seqlen: int = 17) -> torch.Tensor:
    return torch.randint(0, vocab, (n, seqlen), generator=torch.Generator().manual_seed(0))


def _by_hand(model, windows) -> list[float]:
    """Each window's summed NLL from the model's own logits (the unchunked definition)."""
    with torch.no_grad():
        logits = model(input_ids=windows, use_cache=False).logits.float()
    logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    return [-float(logp[i].gather(1, windows[i, 1:, None]).sum()) for i in range(windows.shape[0])]


def test_a_uniform_model_scores_exactly_its_vocabulary_size():
    model = tiny_llama(vocab=96)
    torch.nn.init.zeros_(model.get_output_embeddings().weight)  # every logit 0: p = 1/96 everywhere
    assert P.perplexity(model, _windows(96), progress=False).value == pytest.approx(96.0, rel=1e-6)


@pytest.mark.parametrize("chunk_floats", [1 << 25, 5 * 128])  # a whole window per chunk; 5 tokens per chunk
def test_chunked_windows_equal_the_models_own_logits(monkeypatch, chunk_floats):
    model, windows = tiny_llama(vocab=128), _windows(128)
    monkeypatch.setattr(H, "CHUNK_FLOATS", chunk_floats)
    got = P.perplexity(model, windows, batch_size=2, progress=False)
    want = _by_hand(model, windows)
    assert got.window_nll == pytest.approx(want, rel=1e-6)
    assert got.value == pytest.approx(math.exp(sum(want) / (3 * 16)), rel=1e-6)


def test_one_chunk_per_window_keeps_the_unchunked_bits(monkeypatch):
    model, windows = tiny_llama(vocab=128), _windows(128)
    chunked = P.perplexity(model, windows, progress=False)
    monkeypatch.setattr(P, "head_matches_model", lambda m, ids: False)
    plain = P.perplexity(model, windows, progress=False)
    assert chunked.window_nll == plain.window_nll and chunked.value == plain.value


def test_gemma_soft_capping_after_the_head_is_reproduced(monkeypatch):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, final_logit_softcapping=0.5,
                           sliding_window=8, max_position_embeddings=64)  # fmt: skip
    model = Gemma3ForCausalLM(cfg).eval()
    windows = _windows(128)
    assert P.head_matches_model(model, windows[:1])
    monkeypatch.setattr(H, "CHUNK_FLOATS", 4 * 128)
    assert P.perplexity(model, windows, progress=False).window_nll == pytest.approx(_by_hand(model, windows), rel=1e-6)


def test_an_unknown_transform_after_the_head_keeps_the_plain_path():
    """A family that scales its logits after the head (as some do): the two-token check fails, so
    the chunked head never scores a window with the wrong logits."""

    class Scaled(type(tiny_llama())):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 3.0
            return out

    model = tiny_llama(vocab=64)
    model.__class__ = Scaled
    windows = _windows(64)
    assert not P.head_matches_model(model, windows[:1])
    assert P.perplexity(model, windows, progress=False).window_nll == pytest.approx(_by_hand(model, windows), rel=1e-6)
