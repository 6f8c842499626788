"""lm-eval's ``HFLM`` with the output head run only on the continuation positions a loglikelihood reads.

``HFLM._loglikelihood_tokens`` takes the log-softmax of the whole padded batch's logits, a
(batch x length x vocabulary) float tensor and its copy: at PIQA's ~80 tokens, batch 8 and Gemma-3's
262k vocabulary that is 0.67 GB twice, for the ~20 positions per request it reads. Here the forward
stops at the head (``esparse.evaluation.head``) and the head and log-softmax run on the batch's
continuation rows only: consecutive requests together up to ``CHUNK_FLOATS`` logits (the head's
weight is read once per group, not per request), the greedy check and gather per request. Requests
are ordered, grouped (one-token continuations sharing a context) and batched by lm-eval's own
``Collator`` with the stock keys, so each forward sees the batch the stock path builds; only the
head's GEMM runs on fewer rows, which may move a loglikelihood's last bits (the tests hold it within 1e-6 relative).

The stock path runs where this one cannot promise the same numbers: a seq2seq model, automatic
batch sizes (the scheduler probes the full-vocabulary path), autocast (``mixed_precision_dtype``),
or a head the two-token check rejects.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import Collator
from lm_eval.models.utils_hf import pad_and_concat
from tqdm.auto import tqdm

from esparse.evaluation.head import final_hidden, head_chunk_tokens, head_logits, head_matches_model

Request = tuple[tuple[str, str], list[int], list[int]]


def _sort_key(req: Request) -> tuple[int, tuple[int, ...]]:
    """lm-eval's order: longest context + continuation first, then by the tokens."""
    toks = req[1] + req[2]
    return -len(toks), tuple(toks)


def _group_key(req: Request) -> list[int]:
    """lm-eval's grouping: requests whose context + continuation[:-1] agree share one forward."""
    return req[-2] + req[-1][:-1]


def _groups(sizes: list[int], step: int) -> list[range]:
    """Consecutive index ranges whose sizes sum to at most ``step`` (an item larger than ``step`` alone)."""
    if not sizes:
        return []
    out, start, total = [], 0, 0
    for i, n in enumerate(sizes):
        if total and total + n > step:
            out.append(range(start, i))
            start, total = i, 0
        total += n
    out.append(range(start, len(sizes)))
    return out


class ContinuationHeadLM(HFLM):
    """``HFLM`` whose loglikelihoods never build a batch's full-vocabulary logits."""

    #: which path scored the last call: "continuation" (this class's) or "full" (the stock one)
    head_path: str | None = None

    @torch.no_grad()
    def _loglikelihood_tokens(
        self, requests: list[Request], disable_tqdm: bool = False, override_bs: int | None = None
    ) -> list[tuple[float, bool]]:
        probe = next((r[1] + r[2] for r in requests if len(r[1] + r[2]) >= 2), None)
        usable = (
            self.backend == "causal"
            and self.batch_size != "auto"
            and self.mixed_precision_dtype is None
            and probe is not None
            and head_matches_model(self.model, torch.tensor([probe[:2]], device=self.device))
        )
        self.head_path = "continuation" if usable else "full"
        if not usable:
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)

        re_ord = Collator(requests, sort_fn=_sort_key, group_by="contexts" if self.logits_cache else None,
                          group_fn=_group_key)  # fmt: skip
        res: list[tuple[float, bool]] = []
        step = head_chunk_tokens(self.model.get_output_embeddings().out_features)  # rows per head call
        pbar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc="Running loglikelihood requests")
        for chunk in re_ord.get_batched(n=self.batch_size, batch_fn=None):
            # as the stock path: left-truncate to max_length, drop the last token, right-pad
            inps = [torch.tensor((ctx + cont)[-(self.max_length + 1) :][:-1], dtype=torch.long, device=self.device)
                    for _, ctx, cont in chunk]  # fmt: skip
            lens = [len(i) for i in inps]
            batch = pad_and_concat(max(lens), inps, padding_side="right")  # pads the list's entries in place
            hidden = final_hidden(self.model, batch)
            # consecutive requests' continuation rows go through the head together, at most ``step``
            # rows at a time (a longer continuation alone): the head's weight is read once per group,
            # and at most one group's logits and log-probabilities exist at once
            for group in _groups([len(c) for _, _, c in chunk], step):
                rows = torch.cat([hidden[i, lens[i] - len(chunk[i][2]) : lens[i]] for i in group])
                logp_group = F.log_softmax(head_logits(self.model, rows), dim=-1, dtype=self.softmax_dtype)
                for i, logp in zip(group, logp_group.split([len(chunk[i][2]) for i in group]), strict=True):
                    request_str, ctx, cont = chunk[i]
                    res += self._answers(re_ord, request_str, ctx, cont, logp.unsqueeze(0), pbar)
                del rows, logp_group
            del hidden
        pbar.close()
        return re_ord.get_original(res)

    def _answers(self, re_ord: Collator, request_str, ctx: list[int], cont: list[int], logp: torch.Tensor, pbar):
        """(loglikelihood, is greedy) of the request and of every request grouped with it, from the
        request's continuation log-probabilities ``logp`` [1, cont, vocab], as lm-eval computes them."""
        greedy = logp.argmax(dim=-1)
        out = []
        for req_str, cont_toks, lp in re_ord.get_cache(req_str=request_str, cxt_toks=ctx, cont_toks=cont, logits=logp):
            toks = torch.tensor(cont_toks, dtype=torch.long, device=self.device).unsqueeze(0)
            exact = bool((greedy[:, -toks.shape[1] :] == toks).all())
            answer = (float(torch.gather(lp, 2, toks.unsqueeze(-1)).sum()), exact)
            out.append(answer)
            if req_str is not None:
                self.cache_hook.add_partial("loglikelihood", req_str, answer)
            pbar.update(1)
        return out
