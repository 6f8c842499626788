"""Zero-shot stage: lm-eval runs on the in-memory model, local tasks, offline errors."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval")

from esparse.evaluation import zeroshot  # noqa: E402
from esparse.evaluation.zeroshot import (  # noqa: E402
    ESPARSE_TASKS,
    RIA_TASKS,
    ZeroShotDataError,
    evaluate_zeroshot,
    resolve_config,
)

PIQA_DIR = Path(zeroshot.REPO_ROOT).parent / "shared" / "data" / "piqa"
GOALS = ["red box", "blue cup", "green hat", "small dog"]
# Equal word (= token) counts per doc; doc i even: the correct sol2 has more characters.
SOLS = [("go up", "take down"), ("take down", "go up")] * 8  # 16 docs


def _vocab() -> list[str]:
    words = {"Question", ":", "Answer"}
    for g in GOALS:
        words.update(g.split())
    for a, b in SOLS:
        words.update((a + " " + b).split())
    return ["[UNK]", "[PAD]", "[EOS]", *sorted(words)] + [f"w{i}" for i in range(40)]


@pytest.fixture(scope="module")
def tok():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(_vocab())}
    t = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=t, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")


@pytest.fixture(scope="module")
def model(tok):
    from conftest import tiny_llama

    return tiny_llama(
        0,
        len(tok),
        num_key_value_heads=4,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
    )


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny_task")
    rows = [{"goal": GOALS[i % 4], "sol1": a, "sol2": b, "label": 1} for i, (a, b) in enumerate(SOLS)]
    (d / "tiny.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "tiny_mc.yaml").write_text(
        "task: tiny_mc\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    validation: {d / 'tiny.jsonl'}\n"
        "output_type: multiple_choice\n"
        "validation_split: validation\n"
        'doc_to_text: "Question: {{goal}}\\nAnswer:"\n'
        "doc_to_target: label\n"
        'doc_to_choice: "{{[sol1, sol2]}}"\n'
        "metric_list:\n"
        "  - {metric: acc, aggregation: mean, higher_is_better: true}\n"
        "  - {metric: acc_norm, aggregation: mean, higher_is_better: true}\n"
        "metadata: {version: 1.0}\n"
    )
    return d


def _cfg(tiny_task: Path, **kw) -> dict:
    return {"tasks": ["tiny_mc"], "include_path": str(tiny_task), "batch_size": 4, **kw}


def test_tiny_local_task_metrics(model, tok, tiny_task):
    metrics, details = evaluate_zeroshot(model, tok, _cfg(tiny_task))
    for m in ("acc", "acc_norm", "acc_stderr", "acc_norm_stderr"):
        assert 0.0 <= metrics[f"zeroshot/tiny_mc/{m}"] <= 1.0
    assert metrics["zeroshot/avg/acc"] == metrics["zeroshot/tiny_mc/acc"]
    assert details["n_docs"] == {"tiny_mc": 16}
    assert details["head"] == "continuation"
    assert details["seconds"] > 0 and details["seconds_per_item"] == pytest.approx(details["seconds"] / 16)
    assert not any("," in k for k in metrics)

    _, d10 = evaluate_zeroshot(model, tok, _cfg(tiny_task, limit=10))
    assert d10["n_docs"] == {"tiny_mc": 10}


def test_evaluates_the_in_memory_pruned_model(model, tok, tiny_task):
    """A zeroed lm_head gives uniform log-probs: both choices (same token count) tie exactly, so
    acc picks choice 0 and every gold label is 1 -> acc = 0; acc_norm divides the tied loglik
    (negative) by the choice's character count, so the longer choice wins, which is the gold one
    on the 8 even docs -> acc_norm = 0.5, stderr = sqrt(16 * 0.25 / 15) / sqrt(16) = 0.1291."""
    pruned = copy.deepcopy(model)
    with torch.no_grad():
        pruned.lm_head.weight.zero_()
    calls = []
    pruned.lm_head.register_forward_hook(lambda *_: calls.append(1))

    mp, dp = evaluate_zeroshot(pruned, tok, _cfg(tiny_task))
    md, dd = evaluate_zeroshot(model, tok, _cfg(tiny_task))

    assert calls, "the pruned object's modules never ran"
    assert mp["zeroshot/tiny_mc/acc"] == 0.0
    assert mp["zeroshot/tiny_mc/acc_stderr"] == 0.0
    assert mp["zeroshot/tiny_mc/acc_norm"] == 0.5
    assert mp["zeroshot/tiny_mc/acc_norm_stderr"] == pytest.approx(math.sqrt(4 / 15) / 4, abs=1e-6)
    assert md["zeroshot/tiny_mc/acc"] > 0.0  # the dense model breaks the ties
    # item by item, in doc order: acc wrong everywhere, acc_norm right on the even docs only
    items = dp["items"]["tiny_mc"]
    assert items["n"] == 16 and items["acc"] == "0" * 16 and items["acc_norm"] == "10" * 8
    assert items["docs_sha"] == dd["items"]["tiny_mc"]["docs_sha"]  # the same items for both models
    assert dd["items"]["tiny_mc"]["acc"].count("1") == round(16 * md["zeroshot/tiny_mc/acc"])
    assert float(model.lm_head.weight.detach().abs().sum()) > 0  # dense model untouched


def test_zeroed_down_proj_changes_loglikelihoods(model, tok):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    pruned = copy.deepcopy(model)
    with torch.no_grad():
        pruned.model.layers[0].mlp.down_proj.weight.zero_()
    reqs = [
        Instance("loglikelihood", doc={}, arguments=("Question: red box\nAnswer:", " go up"), idx=0),
        Instance("loglikelihood", doc={}, arguments=("Question: small dog\nAnswer:", " take down"), idx=1),
    ]
    dense = [ll for ll, _ in HFLM(pretrained=model, tokenizer=tok, batch_size=2).loglikelihood(reqs)]
    again = [ll for ll, _ in HFLM(pretrained=model, tokenizer=tok, batch_size=2).loglikelihood(reqs)]
    sparse = [ll for ll, _ in HFLM(pretrained=pruned, tokenizer=tok, batch_size=2).loglikelihood(reqs)]
    assert dense == again
    assert all(abs(a - b) > 1e-6 for a, b in zip(dense, sparse, strict=True))


def test_piqa_local_reads_shared_format():
    if not (PIQA_DIR / "valid.jsonl").is_file():
        pytest.skip(f"PIQA validation files not found at {PIQA_DIR} (shared data not mounted)")
    from lm_eval.tasks import TaskManager

    tm = TaskManager(
        include_path=str(zeroshot.LOCAL_TASKS_DIR), include_defaults=False, metadata={"piqa_data_dir": str(PIQA_DIR)}
    )
    task = tm.load(["piqa_local"])["tasks"]["piqa_local"]
    docs = list(task.validation_docs())
    assert len(docs) == 1838
    assert all(len(task.doc_to_choice(d)) == 2 for d in docs)
    labels = [task.doc_to_target(d) for d in docs]
    assert set(labels) == {0, 1} and sum(labels) == 928  # `sort valid-labels.lst | uniq -c`: 910 / 928
    first = json.loads((PIQA_DIR / "valid.jsonl").open().readline())
    assert task.doc_to_text(docs[0]) == f"Question: {first['goal']}\nAnswer:"
    assert task.doc_to_choice(docs[0]) == [first["sol1"], first["sol2"]]
    assert labels[0] == 0


def test_bundled_piqa_is_the_released_validation_split():
    """The copy in the package is what the old default (../shared/data/piqa) held, byte for byte, so
    records keep their hash and their numbers; it loads with no data_dir at all."""
    from esparse.evaluation.tasks.piqa_local.utils import load_piqa  # type: ignore[import-not-found]

    docs = load_piqa()["validation"]
    assert len(docs) == 1838 and sum(docs["label"]) == 928
    assert (zeroshot.BUNDLED_PIQA / "README.md").read_text().count("Academic Free License") == 1
    if (PIQA_DIR / "valid.jsonl").is_file():
        for name in ("valid.jsonl", "valid-labels.lst"):
            assert (zeroshot.BUNDLED_PIQA / name).read_bytes() == (PIQA_DIR / name).read_bytes()


def test_piqa_local_label_mismatch_is_rejected(tmp_path):
    from esparse.evaluation.tasks.piqa_local.utils import read_split  # type: ignore[import-not-found]

    (tmp_path / "valid.jsonl").write_text('{"goal": "g", "sol1": "a", "sol2": "b"}\n' * 3)
    (tmp_path / "valid-labels.lst").write_text("0\n1\n")
    with pytest.raises(ValueError, match="3 docs but .* 2 labels"):
        read_split(tmp_path)
    (tmp_path / "valid-labels.lst").write_text("0\n2\n1\n")
    with pytest.raises(ValueError, match="'2' on line 2"):
        read_split(tmp_path)


def test_missing_piqa_dir_names_the_task(model, tok, tmp_path):
    with pytest.raises(ZeroShotDataError, match="piqa_local.*missing"):
        evaluate_zeroshot(model, tok, {"tasks": ["piqa_local"], "data_dir": str(tmp_path / "nope")})


def test_config_validation_and_presets(tmp_path):
    c = resolve_config({"tasks": "esparse_tasks"})
    assert c["tasks"] == ["hellaswag", "piqa", "openbookqa", "sciq", "logiqa"] == list(ESPARSE_TASKS)
    assert resolve_config({"tasks": "ria_tasks"})["tasks"] == ["boolq", "rte", "hellaswag", "arc_challenge", "mnli"]
    assert len(RIA_TASKS) == 5
    c = resolve_config(None)
    assert c["tasks"] == ["piqa_local"] and c["num_fewshot"] == 0 and c["batch_size"] == 8
    assert c["data_dir"] == str(zeroshot.BUNDLED_PIQA)  # inside the package: no path outside the repo
    assert c["include_path"] == [str(zeroshot.LOCAL_TASKS_DIR)]
    for bad in ({"batch_size": 0}, {"num_fewshot": -1}, {"limit": 0}, {"tasks": []}, {"bogus": 1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            resolve_config(bad)
    with pytest.raises(ValueError, match="nowhere"):
        resolve_config({"include_path": str(tmp_path / "nowhere")})


def test_unreachable_hub_dataset_raises_data_error(model, tok, tmp_path, monkeypatch):
    import datasets
    from huggingface_hub import constants

    (tmp_path / "hubtask.yaml").write_text(
        "task: hub_only_task\ndataset_path: esparse-tests/no-such-dataset\noutput_type: multiple_choice\n"
        'validation_split: validation\ndoc_to_text: "{{q}}"\ndoc_to_target: 0\ndoc_to_choice: "{{[a, b]}}"\n'
    )
    monkeypatch.setattr(zeroshot, "_hub_reachable", lambda timeout=3.0: False)
    before = (constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)
    with pytest.raises(ZeroShotDataError, match=r"'hub_only_task'.*hub is unreachable.*include_path.*piqa_local"):
        evaluate_zeroshot(model, tok, {"tasks": ["hub_only_task"], "include_path": str(tmp_path)})
    assert before == (constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)  # switches restored


def test_unknown_task_fails_fast(model, tok):
    with pytest.raises(ValueError, match=r"\['no_such_task_xyz'\]"):
        evaluate_zeroshot(model, tok, {"tasks": ["piqa_local", "no_such_task_xyz"]})


@pytest.mark.slow
def test_real_hub_task_offline(model, tok):
    """Needs lm-eval's built-in index (~16 s), hence slow; the fake hub task above covers the path."""
    if zeroshot._hub_reachable():
        pytest.skip("the Hugging Face hub is reachable here; the offline path is covered by the fake hub task")
    with pytest.raises(ZeroShotDataError, match=r"'piqa'.*unreachable.*include_path"):
        evaluate_zeroshot(model, tok, {"tasks": ["piqa"]})


def _requests(tok):
    from lm_eval.api.instance import Instance

    args = [
        ("Question: red box\nAnswer:", " go up"),
        ("Question: red box\nAnswer:", " take down"),
        ("Question: small dog\nAnswer:", " w1"),  # one-token continuations sharing a context: one forward
        ("Question: small dog\nAnswer:", " w2"),
        ("Question: blue cup green hat\nAnswer:", " go up take down w3 w4"),
        ("Question:", " w5"),
    ]
    return [Instance("loglikelihood", doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def _head_rows(model) -> list[int]:
    rows: list[int] = []
    model.get_output_embeddings().register_forward_hook(lambda _m, _i, out: rows.append(out[..., 0].numel()))
    return rows


@pytest.mark.parametrize("batch_size", [1, 4])
def test_continuation_head_equals_lm_evals_full_logits(model, tok, batch_size):
    """Loglikelihoods within 1e-6 relative and the same greedy flags as lm-eval's own HFLM, while the
    head runs once per batch on the continuation rows only (the stock path: batch x padded length)."""
    from lm_eval.models.huggingface import HFLM

    from esparse.evaluation.continuation_lm import ContinuationHeadLM

    reqs = _requests(tok)
    stock_model, lean_model = copy.deepcopy(model), copy.deepcopy(model)
    stock_rows, lean_rows = _head_rows(stock_model), _head_rows(lean_model)
    want = HFLM(pretrained=stock_model, tokenizer=tok, batch_size=batch_size).loglikelihood(reqs)
    lm = ContinuationHeadLM(pretrained=lean_model, tokenizer=tok, batch_size=batch_size)
    got = lm.loglikelihood(reqs)
    assert lm.head_path == "continuation"
    assert [g for _, g in got] == [g for _, g in want]
    assert [ll for ll, _ in got] == pytest.approx([ll for ll, _ in want], rel=1e-6)
    scored = lean_rows[2:]  # [0], [1]: the two-token check (the model's own head, then head_logits)
    conts = [len(tok(r.arguments[1])["input_ids"]) for r in reqs]
    forwards = len(reqs) - 1  # the shared-context one-token pair is scored once
    assert len(scored) == -(-forwards // batch_size)  # one head call per batch
    assert sum(scored) == sum(conts) - 1  # exactly the continuation rows
    assert sum(scored) < sum(stock_rows)


def test_continuation_head_reproduces_gemma_soft_capping(tok):
    from lm_eval.models.huggingface import HFLM
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from esparse.evaluation.continuation_lm import ContinuationHeadLM

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, final_logit_softcapping=0.5,
                           sliding_window=8, max_position_embeddings=64, pad_token_id=tok.pad_token_id)  # fmt: skip
    gemma = Gemma3ForCausalLM(cfg).eval()
    reqs = _requests(tok)
    want = HFLM(pretrained=gemma, tokenizer=tok, batch_size=4).loglikelihood(reqs)
    lm = ContinuationHeadLM(pretrained=gemma, tokenizer=tok, batch_size=4)
    got = lm.loglikelihood(reqs)
    assert lm.head_path == "continuation"
    assert [ll for ll, _ in got] == pytest.approx([ll for ll, _ in want], rel=1e-6)
    assert [g for _, g in got] == [g for _, g in want]


def test_an_unknown_transform_after_the_head_keeps_lm_evals_path(model, tok):
    from lm_eval.models.huggingface import HFLM

    from esparse.evaluation.continuation_lm import ContinuationHeadLM

    class Scaled(type(model)):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 3.0
            return out

    scaled = copy.deepcopy(model)
    scaled.__class__ = Scaled
    reqs = _requests(tok)
    lm = ContinuationHeadLM(pretrained=scaled, tokenizer=tok, batch_size=4)
    got = lm.loglikelihood(reqs)
    assert lm.head_path == "full"
    assert got == HFLM(pretrained=scaled, tokenizer=tok, batch_size=4).loglikelihood(reqs)


def test_continuation_head_in_small_chunks_gives_the_same_loglikelihoods(model, tok, monkeypatch):
    """The head runs on at most CHUNK_FLOATS logits at a time: 3 rows here, so requests straddle chunks."""
    from esparse.evaluation import head
    from esparse.evaluation.continuation_lm import ContinuationHeadLM

    reqs = _requests(tok)
    whole = ContinuationHeadLM(pretrained=model, tokenizer=tok, batch_size=4).loglikelihood(reqs)
    monkeypatch.setattr(head, "CHUNK_FLOATS", 3 * len(tok))
    rows = _head_rows(small := copy.deepcopy(model))
    chunked = ContinuationHeadLM(pretrained=small, tokenizer=tok, batch_size=4).loglikelihood(reqs)
    # groups of at most 3 continuation rows; the 6-token continuation alone
    assert sorted(set(rows[2:])) in ([1, 2, 3, 6], [2, 3, 6], [1, 3, 6], [1, 2, 6]) and 6 in rows[2:]
    assert all(n <= 3 or n == 6 for n in rows[2:])
    assert [g for _, g in chunked] == [g for _, g in whole]
    assert [ll for ll, _ in chunked] == pytest.approx([ll for ll, _ in whole], rel=1e-6)


def test_head_groups_by_hand():
    from esparse.evaluation.continuation_lm import _groups

    assert _groups([2, 2, 1, 6, 1, 1], 3) == [range(0, 1), range(1, 3), range(3, 4), range(4, 6)]
    assert _groups([1, 1, 1], 10) == [range(0, 3)]
    assert _groups([], 3) == []
