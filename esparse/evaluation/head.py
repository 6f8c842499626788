"""Logits on demand: the forward stops where the output head starts, and the head runs only on the
positions a loss needs.

A batch's full-vocabulary logits are the largest tensor of an evaluation (4 x 512 tokens x 262k
vocabulary is 2.1 GB of float32 for Gemma-3), yet perplexity reads one value per position and a
zero-shot loglikelihood only the continuation's positions; both run the head on at most
``CHUNK_FLOATS`` logits at a time. ``final_hidden`` returns the states that enter the head,
``head_logits`` applies the head (and the soft-capping some families apply after it);
``head_matches_model`` proves on two tokens that the pair equals the model's own logits, and
callers keep the model's plain forward where it does not (a family with another transform).
"""

from __future__ import annotations

import torch

#: float32 logits per head chunk: 32 Mi floats = 128 MiB, a whole 512-token window at SmolLM2's 49k
#: vocabulary (its losses keep their bits), 128 tokens at Gemma-3's 262k
CHUNK_FLOATS = 1 << 25


def head_chunk_tokens(vocab: int) -> int:
    """Tokens whose float32 logits fit ``CHUNK_FLOATS``: how many rows the head computes at a time."""
    return max(1, CHUNK_FLOATS // vocab)


class _AtHead(Exception):
    """Raised by the head's pre-hook: the final hidden states are all the forward needed to do."""


def final_hidden(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The hidden states entering the output head, without computing the head."""
    store: dict[str, torch.Tensor] = {}

    def grab(_module, args):
        store["h"] = args[0]
        raise _AtHead

    handle = model.get_output_embeddings().register_forward_pre_hook(grab)
    try:
        model(input_ids=ids, use_cache=False)
    except _AtHead:
        pass
    finally:
        handle.remove()
    return store["h"]


def head_logits(model: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The model's logits from its final hidden states: the head, then the soft-capping of the
    families that apply one after it (Gemma's ``final_logit_softcapping``), in place on the head's
    output (the same element-wise operations as ``tanh(logits / cap) * cap``, no temporaries)."""
    logits = model.get_output_embeddings()(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    return logits.div_(cap).tanh_().mul_(cap) if cap else logits


@torch.no_grad()
def head_matches_model(model: torch.nn.Module, ids: torch.Tensor) -> bool:
    """Does ``head_logits(final_hidden)`` give the model's own logits (on two tokens of ``ids[0]``)?"""
    if model.get_output_embeddings() is None:
        return False
    probe = ids[:1, :2]
    want = model(input_ids=probe, use_cache=False).logits.float()
    got = head_logits(model, final_hidden(model, probe)).float()
    return got.shape == want.shape and torch.allclose(got, want, rtol=1e-5, atol=1e-5)
