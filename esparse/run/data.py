"""Text corpora for calibration and perplexity, and calibration sampling.

``bundled_wiki`` is real English Wikipedia text shipped inside gensim's test data (106 articles,
≈480k words). It is split by article — deterministically, by a hash of the title — into a
calibration part and a held-out evaluation part, so evaluation never sees calibration text.

The hub corpora (``wikitext2``, ``c4``, ``ptb``) use their current dataset names on the Hugging
Face hub; each also accepts a local file (``data.<name>.path`` in the config) so a user without
the hub can bring their own copy.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from esparse.models.loading import bundled_package_dir, default_cache_dir
from esparse.records.memory import release_freed_heap

_GENSIM_FILE = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
log = logging.getLogger(__name__)
EVAL_FRACTION_PERCENT = 20  # share of articles held out for evaluation


#: the hub dataset behind each hub corpus (read when no ``data.<corpus>.path`` is given)
HUB_DATASETS = {"wikitext2": "Salesforce/wikitext", "c4": "allenai/c4", "ptb": "ptb-text-only/ptb_text_only"}


class DataUnavailableError(RuntimeError):
    """A corpus could not be read from the hub or from its local path."""


def _wiki_articles(cache_dir: Path) -> list[tuple[str, str]]:
    """(title, plain text) of the non-redirect articles, extracted once and cached as JSON."""
    cache = cache_dir / "data" / "bundled_wiki.json"
    if cache.is_file():
        return [tuple(a) for a in json.loads(cache.read_text())]
    pkg = bundled_package_dir("gensim")
    src = pkg / _GENSIM_FILE if pkg else None
    if src is None or not src.is_file():
        raise DataUnavailableError(f"bundled_wiki needs the gensim package (looked for {src}); pip install gensim")
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    articles = []
    with bz2.BZ2File(src) as fh:
        for title, text, _pageid in extract_pages(fh):
            if not text or text.lstrip().lower().startswith("#redirect"):
                continue
            clean = filter_wiki(text).replace("'''", "").replace("''", "")
            clean = "\n".join(line.strip() for line in clean.splitlines())
            while "\n\n\n" in clean:
                clean = clean.replace("\n\n\n", "\n\n")
            articles.append((title, clean.strip()))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(articles))
    os.replace(tmp, cache)
    return articles


def is_eval_article(title: str) -> bool:
    """Deterministic, order-independent split: a stable hash of the title decides."""
    return int(hashlib.sha1(title.encode()).hexdigest(), 16) % 100 < EVAL_FRACTION_PERCENT


def bundled_wiki(split: str, cache_dir: Path, **_: Any) -> list[str]:
    if split not in ("calibration", "eval"):
        raise ValueError(f"bundled_wiki split={split!r} is not one of ['calibration', 'eval']")
    arts = _wiki_articles(cache_dir)
    return [text for title, text in arts if is_eval_article(title) == (split == "eval")]


def read_local(path: str | Path, key: str = "data.<corpus>.path", field: str = "text") -> list[str]:
    """The documents of a local corpus file: one per ``.jsonl`` line (its ``field``), else the whole
    text. Every failure names the key, the file and (for ``.jsonl``) the line."""
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "does not exist"
        raise DataUnavailableError(f"{key}: {str(p)!r} {what}; give a .txt file or a .jsonl with a {field!r} field")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataUnavailableError(f"{key}: {str(p)!r} is not UTF-8 text ({e})") from None
    if not text.strip():
        raise DataUnavailableError(f"{key}: {str(p)!r} is empty")
    if p.suffix != ".jsonl":
        return [text]
    docs = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataUnavailableError(f"{key}: {str(p)!r} line {i} is not JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get(field), str):
            got = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise DataUnavailableError(f"{key}: {str(p)!r} line {i} has no string {field!r} field (got {got})")
        docs.append(row[field])
    return docs


def split_documents(docs: list[str], split: str, percent: int) -> list[str]:
    """One local file for calibration *and* evaluation: ``percent`` % of its documents (a stable
    hash of each one's text decides, so the split never depends on order or run) are held out for
    evaluation, the rest calibrate. A plain-text file's documents are its blank-line paragraphs (its
    lines, if it has no blank line)."""
    if len(docs) == 1:
        sep = "\n\n" if "\n\n" in docs[0] else "\n"
        docs = [d for d in docs[0].split(sep) if d.strip()]
    held = [int(hashlib.sha1(d.encode()).hexdigest(), 16) % 100 < percent for d in docs]
    return [d for d, h in zip(docs, held, strict=True) if h == (split != "calibration")]


def _local_texts(path: str, split: str, corpus: str, split_percent: int | None = None) -> list[str]:
    docs = read_local(path, key=f"data.{corpus}.path")
    if split_percent is None:
        return docs
    part = split_documents(docs, split, int(split_percent))
    if not part:
        raise DataUnavailableError(
            f"data.{corpus}.split_percent={split_percent}: the {split} part of {path!r} is empty "
            f"({len(docs)} document(s)); give more documents or another split_percent"
        )
    return part


def _hub(name: str, loader: Callable[[], list[str]]) -> list[str]:
    try:
        return loader()
    except Exception as e:  # datasets raises many types (ConnectionError, DatasetNotFoundError, OSError)
        raise DataUnavailableError(
            f"dataset {name!r} could not be loaded from the Hugging Face hub ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}). Offline, give a local copy with "
            f"data.{name}.path=/file.txt (or .jsonl with a 'text' field), or use bundled_wiki."
        ) from None


def wikitext2(split: str, path: str | None = None, split_percent: int | None = None, **_: Any) -> list[str]:
    if path:
        return _local_texts(path, split, "wikitext2", split_percent)
    hub_split = {"calibration": "train", "eval": "test", "test": "test", "validation": "validation"}[split]

    def load() -> list[str]:
        from datasets import load_dataset

        return list(load_dataset(HUB_DATASETS["wikitext2"], "wikitext-2-raw-v1", split=hub_split)["text"])

    return ["".join(_hub("wikitext2", load))]  # wikitext lines already carry their newlines


def c4(split: str, path: str | None = None, split_percent: int | None = None, **_: Any) -> list[str]:
    if path:
        return _local_texts(path, split, "c4", split_percent)
    files = {
        "calibration": "en/c4-train.00000-of-01024.json.gz",
        "eval": "en/c4-validation.00000-of-00008.json.gz",
        "validation": "en/c4-validation.00000-of-00008.json.gz",
    }[split]

    def load() -> list[str]:
        from datasets import load_dataset

        ds = load_dataset(HUB_DATASETS["c4"], data_files={"x": files}, split="x")
        return list(ds["text"])

    texts = _hub("c4", load)
    return texts if split == "calibration" else [" ".join(texts[:1100])]  # Wanda's C4 eval: 1100 docs


def ptb(split: str, path: str | None = None, split_percent: int | None = None, **_: Any) -> list[str]:
    if path:
        return _local_texts(path, split, "ptb", split_percent)
    hub_split = {"calibration": "train", "eval": "test", "test": "test", "validation": "validation"}[split]

    def load() -> list[str]:
        from datasets import load_dataset

        return list(load_dataset(HUB_DATASETS["ptb"], split=hub_split)["sentence"])

    return [" ".join(_hub("ptb", load))]


CORPORA: dict[str, Callable[..., list[str]]] = {
    "bundled_wiki": bundled_wiki,
    "wikitext2": wikitext2,
    "c4": c4,
    "ptb": ptb,
}


def load_texts(name: str, split: str, cache_dir: Path | None = None, **kw: Any) -> list[str]:
    """Texts of corpus ``name`` for ``split`` ('calibration', 'eval', or a hub split name)."""
    if name not in CORPORA:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(CORPORA)}")
    return CORPORA[name](split, cache_dir=Path(cache_dir).expanduser() if cache_dir else default_cache_dir(), **kw)


def tokenize_stream(texts: list[str], tokenizer, what: str = "the corpus") -> torch.Tensor:
    """Join texts with blank lines (as Wanda/RIA do for WikiText) and tokenize once: 1-D LongTensor."""
    joined = "\n\n".join(texts)
    if not joined.strip():
        raise DataUnavailableError(f"{what} is empty: nothing to tokenize")
    ids = tokenizer(joined, return_tensors="pt", add_special_tokens=False)["input_ids"][0]
    del joined
    release_freed_heap()  # the tokenizer's working memory, freed but still mapped: ~0.3 GB for 2.3 M chars
    return ids


def calibration_windows(stream: torch.Tensor, nsamples: int, seqlen: int, seed: int) -> tuple[torch.Tensor, list[int]]:
    """``nsamples`` random windows of ``seqlen`` tokens from one token stream, seeded.

    Returns the (nsamples, seqlen) ids and the start offsets (their hash goes into the record, so
    two runs can prove they saw the same calibration tokens).
    """
    if nsamples < 1:
        raise ValueError(f"calibration.nsamples={nsamples} must be >= 1")
    if stream.numel() <= seqlen:
        raise DataUnavailableError(
            f"calibration.seqlen: {seqlen}: the calibration corpus has {stream.numel()} tokens, not more than one "
            f"window; give a longer corpus (data.<corpus>.path) or a smaller calibration.seqlen"
        )
    if stream.numel() < nsamples * seqlen:
        log.warning(
            "calibration corpus has %d tokens, fewer than calibration.nsamples x seqlen = %d: windows overlap",
            stream.numel(),
            nsamples * seqlen,
        )
    gen = torch.Generator().manual_seed(int(seed))
    starts = torch.randint(0, stream.numel() - seqlen, (nsamples,), generator=gen).tolist()
    return torch.stack([stream[s : s + seqlen] for s in starts]), starts


def eval_windows(
    stream: torch.Tensor, seqlen: int, nsamples: int | None = None, what: str = "evaluation corpus"
) -> torch.Tensor:
    """Non-overlapping windows of ``seqlen`` (all of them unless ``nsamples`` caps the count)."""
    n = stream.numel() // seqlen
    if n < 1:
        raise DataUnavailableError(
            f"eval.ppl.seqlen: {seqlen}: the {what} has {stream.numel()} tokens, fewer than one window; give a "
            f"longer corpus (data.<corpus>.path) or a smaller eval.ppl.seqlen"
        )
    if nsamples is not None:
        n = min(n, int(nsamples))
    return stream[: n * seqlen].view(n, seqlen)


def hash_ints(values: list[int]) -> str:
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]


def dataset_kwargs(data_cfg: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """Per-dataset options from ``cfg.data.<name>`` (e.g. a local ``path``)."""
    if not data_cfg or name not in data_cfg or data_cfg[name] is None:
        return {}
    return {k: v for k, v in dict(data_cfg[name]).items() if v is not None}
