"""encoder_book.pretraining: MLM masking (proportions, specials, labels, whole words, determinism), sparse prediction,
fill_mask, document marks, and `pretrain` end to end: files, HF loading, bit-identical resume."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from encoder_book.bert import BertConfig, BertForMaskedLM
from encoder_book.pretraining import (
    MLMMasker,
    SparseBertForMaskedLM,
    evaluate_mlm,
    fill_mask,
    mark_documents,
    mlm_accuracy,
    pretrain,
)
from encoder_book.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    "Packed corpora are cached on disk: keep the tests' copies out of the user's cache."
    monkeypatch.setenv("ENCODER_BOOK_CACHE", str(tmp_path / "cache"))


def random_batch(tok, n=2048, seq=128, seed=0):
    "Random non-special ids in [CLS] ... [SEP] rows, the last quarter of each row padding."
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, tok.vocab_size, (n, seq), generator=g)
    ids[:, 0], ids[:, seq * 3 // 4 - 1] = tok.cls_token_id, tok.sep_token_id
    ids[:, seq * 3 // 4:] = tok.pad_token_id
    return ids, (ids != tok.pad_token_id).long()


def within(observed, p, n, se=4.0):
    return abs(observed - p) <= se * math.sqrt(p * (1 - p) / n)


def test_masking_proportions(tok):
    ids, attn = random_batch(tok)
    x, labels = MLMMasker(tok).mask(ids, attn, torch.Generator().manual_seed(1))
    chosen = labels != -100
    eligible = int(attn.sum()) - 2 * len(ids)                      # all real tokens but [CLS] and [SEP]
    n = int(chosen.sum())
    assert within(n / eligible, 0.15, eligible)
    masked = int((x[chosen] == tok.mask_token_id).sum())
    kept = int((x[chosen] == ids[chosen]).sum())
    assert within(masked / n, 0.8, n) and within(kept / n, 0.1, n, se=5) and within((n - masked - kept) / n, 0.1, n, se=5)


def test_specials_padding_and_labels(tok):
    ids, attn = random_batch(tok, n=256)
    ids[:, 5] = tok.unk_token_id
    m = MLMMasker(tok, mlm_probability=0.5)
    x, labels = m.mask(ids, attn, torch.Generator().manual_seed(2))
    chosen = labels != -100
    special = (ids == tok.cls_token_id) | (ids == tok.sep_token_id) | (ids == tok.pad_token_id) | (ids == tok.unk_token_id)
    assert not chosen[special].any()                                # never [CLS], [SEP], [PAD] (or [UNK])
    assert torch.equal(x[~chosen], ids[~chosen])                    # untouched where not chosen
    assert torch.equal(labels[chosen], ids[chosen])                 # the label is the original token
    assert (labels[~chosen] == -100).all()
    replaced = chosen & (x != tok.mask_token_id) & (x != ids)
    assert replaced.any() and not m.special[x[replaced]].any()     # random tokens come from the ordinary vocabulary
    assert x.shape == ids.shape and x.dtype == ids.dtype


def test_whole_word_masking(tok):
    text = "the acting is uncharacteristically wonderful and the soundtrack is unbelievably predictable"
    enc = tok([text] * 400, return_tensors="pt")
    m = MLMMasker(tok, whole_word=True)
    x, labels = m.mask(enc["input_ids"], enc["attention_mask"], torch.Generator().manual_seed(3))
    pieces = tok.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    assert any(p.startswith("##") for p in pieces)
    starts = m.word_starts(enc["input_ids"])[0]
    chosen = labels != -100
    for start in starts.unique():                                   # a word is chosen whole or not at all
        word = chosen[:, starts == start]
        assert (word.all(1) | ~word.any(1)).all()
    words = [i for i, p in enumerate(pieces) if not p.startswith("##") and p not in ("[CLS]", "[SEP]")]
    rate = chosen[:, words].float().mean().item()
    assert within(rate, 0.15, 400 * len(words))
    # a block may start inside a word: the first piece then starts a word of its own
    ids = enc["input_ids"][:, 1:]
    assert m.word_starts(ids)[0, 0] == 0


def test_determinism(tok):
    ids, attn = random_batch(tok, n=64)
    m = MLMMasker(tok)
    a = m.mask(ids, attn, torch.Generator().manual_seed(7))
    b = m.mask(ids, attn, torch.Generator().manual_seed(7))
    c = m.mask(ids, attn, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    batch = {"input_ids": ids, "attention_mask": attn}
    torch.manual_seed(0); t1 = m(batch)["labels"]
    torch.manual_seed(0); t2 = m(batch)["labels"]
    t3 = m(batch)["labels"]
    assert torch.equal(t1, t2) and not torch.equal(t1, t3)          # training: fresh masks, seeded by torch's RNG
    e1 = m(batch, training=False)["labels"]                         # evaluation: fixed per block, any batch
    e2 = m({"input_ids": ids[10:20], "attention_mask": attn[10:20]}, training=False)["labels"]
    assert torch.equal(e1[10:20], e2)


def tiny_config(vocab_size, **kw):
    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, **kw)


def test_sparse_prediction_same_loss_and_gradients(tok):
    torch.manual_seed(0)
    sparse = SparseBertForMaskedLM(tiny_config(tok.vocab_size, hidden_dropout_prob=0.0,
                                               attention_probs_dropout_prob=0.0))
    full = BertForMaskedLM(sparse.config)
    full.load_state_dict(sparse.state_dict())
    ids, attn = random_batch(tok, n=8, seq=32)
    batch = MLMMasker(tok)({"input_ids": ids, "attention_mask": attn})
    a, b = sparse(**batch), full(**batch)
    assert a.logits.shape == (int((batch["labels"] != -100).sum()), tok.vocab_size)
    torch.testing.assert_close(a.loss, b.loss)
    a.loss.backward(); b.loss.backward()
    for (name, p), q in zip(sparse.named_parameters(), full.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    sparse.eval()
    assert sparse(**batch).logits.shape == (8, 32, tok.vocab_size)   # full logits outside training
    assert 0 <= mlm_accuracy(b.logits, batch["labels"]) <= 1
    assert mlm_accuracy(a.logits, batch["labels"]) == mlm_accuracy(b.logits, batch["labels"])


def test_fill_mask_and_documents(tok):
    model = BertForMaskedLM(tiny_config(tok.vocab_size))
    out = fill_mask(model, tok, "the film is [MASK] and the [MASK] is dull", top_k=3)
    assert len(out) == 2 and all(len(o) == 3 for o in out)
    assert all(isinstance(t, str) and 0 <= p <= 1 for o in out for t, p in o)
    assert out[0][0][1] >= out[0][1][1] >= out[0][2][1]
    with pytest.raises(ValueError, match="MASK"):
        fill_mask(model, tok, "no mask here")
    lines = ["= Alpha =", "text a", "= = Part = =", "more a", "= Beta =", "text b"]
    assert mark_documents(lines) == ["= Alpha =", "text a", "= = Part = =", "more a [SEP]", "= Beta =", "text b"]


def run(out, tok, **kw):
    cfg = TrainConfig(device="cpu", batch_size=8, eval_batch_size=32, lr=2e-3, save_every=3, progress=False,
                      **kw.pop("train", {}))
    return pretrain("tiny", out, tokenizer=kw.pop("tokenizer", tok), config=tiny_config(1), train_config=cfg,
                    block_size=32, progress=False, **kw)


def test_pretrain_end_to_end_and_hf(tmp_path, texts):
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "run"
    metrics = run(out, None, vocab_size=200, max_steps=6)          # trains its own tokenizer
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "metrics.json",
                 "metrics.jsonl"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("final_loss", "eval_loss", "eval_perplexity", "eval_masked_accuracy", "train_seconds", "steps",
                "params"):
        assert key in saved, key
    assert saved["steps"] == 6 and saved == json.loads(json.dumps(metrics))
    log = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert saved["final_loss"] == [r["loss"] for r in log if "loss" in r and r["step"] == 6][0]
    assert math.isclose(saved["eval_perplexity"], math.exp(saved["eval_loss"]))
    assert list((out / "checkpoints").glob("step-*"))
    hf = transformers.BertForMaskedLM.from_pretrained(out).eval()
    ours = BertForMaskedLM.from_pretrained(out)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    enc = tok(["the film is [MASK] ."], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(hf(**enc).logits, ours(**enc).logits, atol=1e-5, rtol=1e-4)


def test_resume_is_bit_identical(tmp_path, tok):
    a = run(tmp_path / "a", tok, max_steps=8)
    stopped = run(tmp_path / "b", tok, max_steps=8, train={"stop_after": 4})
    assert not stopped["finished"] and stopped["steps"] == 4 and not (tmp_path / "b" / "metrics.json").exists()
    b = run(tmp_path / "b", tok, max_steps=8, resume=True)
    wa, wb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["final_loss"] == b["final_loss"] and a["eval_loss"] == b["eval_loss"] and b["steps"] == 8


def test_evaluate_mlm_is_repeatable(tok):
    from encoder_book.core import tiny_corpus
    from encoder_book.data import pack_corpus
    data = pack_corpus(tok, tiny_corpus(30, seed=4), 32, cache=False)
    model = BertForMaskedLM(tiny_config(tok.vocab_size))
    m = MLMMasker(tok)
    r1, r2 = evaluate_mlm(model, data, m, batch_size=16), evaluate_mlm(model, data, m, batch_size=7)
    assert r1["masked_tokens"] == r2["masked_tokens"] > 0 and r1["accuracy"] == r2["accuracy"]   # the same masks
    assert r1["loss"] == pytest.approx(r2["loss"], rel=1e-6)       # summed in another order
    assert r1["loss"] == pytest.approx(math.log(tok.vocab_size), rel=0.1)   # untrained: about uniform

    class Plain(torch.nn.Module):                                   # any model: scored from its full logits
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **batch):
            return self.inner(**batch)
    r3 = evaluate_mlm(Plain(model), data, m, batch_size=16)
    assert r3["masked_tokens"] == r1["masked_tokens"] and r3["loss"] == pytest.approx(r1["loss"], rel=1e-5)
    assert r3["accuracy"] == r1["accuracy"]


def test_tokenizer_given_as_a_folder(tmp_path, vocab_dir):
    metrics = run(tmp_path / "c", str(vocab_dir), max_steps=2)
    assert (tmp_path / "c" / "vocab.txt").read_text() == (vocab_dir / "vocab.txt").read_text()
    assert metrics["steps"] == 2 and metrics["vocab_size"] == len((vocab_dir / "vocab.txt").read_text().split())


DDP_SCRIPT = """
import json, torch
from encoder_book.bert import BertConfig
from encoder_book.pretraining import pretrain
from encoder_book.train import TrainConfig
torch.set_num_threads(1)
cfg = TrainConfig(device="cpu", batch_size=8, eval_batch_size=32, lr=2e-3, save_every=3, progress=False)
config = BertConfig(vocab_size=1, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    max_position_embeddings=64)
m = pretrain("tiny", {out!r}, config=config, train_config=cfg, vocab_size=200, block_size=32, max_steps=4,
             progress=False)
import torch.distributed as dist
with open({out!r} + f"-rank{{dist.get_rank()}}.json", "w") as f: json.dump(m, f)
"""


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(out=str(tmp_path / "ddp")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(script)], capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    results = {rank: json.loads((tmp_path / f"ddp-rank{rank}.json").read_text()) for rank in (0, 1)}
    same = ("final_loss", "eval_loss", "eval_masked_accuracy", "steps", "params")
    assert set(results) == {0, 1} and all(results[0][k] == results[1][k] for k in same)   # the ranks agree
    assert results[0]["world_size"] == 2 and results[0]["steps"] == 4
    for name in ("config.json", "model.safetensors", "vocab.txt", "metrics.json"):
        assert (tmp_path / "ddp" / name).is_file(), name


# --- sentence-order prediction (ALBERT's SOP) -------------------------------------------

def packed_blocks(tok, size=32):
    from encoder_book.data import pack_corpus
    from encoder_book.pretraining import load_texts
    return pack_corpus(tok, mark_documents(load_texts("tiny", "train")), size, cache=False)


def test_sentence_order_pairs_rebuild_the_blocks(tok):
    import numpy as np

    from encoder_book.data import TokenizedData
    from encoder_book.pretraining import sentence_order_pairs
    blocks = packed_blocks(tok)
    pairs = sentence_order_pairs(blocks, tok, seed=0)
    n, size = len(blocks), 32
    ids, out = blocks.ids.reshape(n, size), pairs.ids.reshape(n, size)
    types = pairs.type_ids.reshape(n, size)
    assert pairs.labels.tolist() == sentence_order_pairs(blocks, tok, seed=0).labels.tolist()
    assert pairs.labels.tolist() != sentence_order_pairs(blocks, tok, seed=1).labels.tolist()
    assert 0.35 < pairs.labels.mean() < 0.65 and set(pairs.labels.tolist()) == {0, 1}
    stops = {tok.convert_tokens_to_ids(s) for s in (".", "!", "?")}
    at_stop = 0
    for i in range(n):
        row = out[i]
        seps = [k for k, t in enumerate(row.tolist()) if t == tok.sep_token_id]
        assert row[0] == tok.cls_token_id and seps[-1] == size - 1
        mid = seps[-2]
        a, b = row[1:mid], row[mid + 1:-1]
        first, second = (b, a) if pairs.labels[i] else (a, b)
        # the two parts are the block's text (less its last token), cut once
        assert first.tolist() + second.tolist() == ids[i, 1:-2].tolist()
        assert len(first) >= (size - 3) // 4 and len(second) >= (size - 3) // 4 - 1
        assert types[i, : mid + 1].tolist() == [0] * (mid + 1)
        assert types[i, mid + 1:].tolist() == [1] * (size - mid - 1)
        at_stop += int(first[-1]) in stops
    assert at_stop > n // 2              # most cuts end a sentence
    uneven = TokenizedData(blocks.ids[:50], np.array([0, 20, 50]), None, None, 0)
    with pytest.raises(ValueError, match="one length"):
        sentence_order_pairs(uneven, tok)


def test_sparse_pretraining_model_same_loss_and_gradients(tok):
    from encoder_book.bert import BertForPreTraining
    from encoder_book.pretraining import SparseBertForPreTraining, sentence_order_pairs
    torch.manual_seed(0)
    cfg = tiny_config(tok.vocab_size, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    sparse = SparseBertForPreTraining(cfg)
    full = BertForPreTraining(cfg)
    full.load_state_dict(sparse.state_dict())
    pairs = sentence_order_pairs(packed_blocks(tok), tok)
    batch = pairs.collate(list(range(8)))
    order = batch.pop("labels")
    batch = {**MLMMasker(tok)(batch), "next_sentence_label": order}
    a, b = sparse(**batch), full(**batch)
    assert a.prediction_logits.shape[0] == int((batch["labels"] != -100).sum())
    torch.testing.assert_close(a.loss, b.loss)
    a.loss.backward(); b.loss.backward()
    for (name, p), q in zip(sparse.named_parameters(), full.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    assert sparse.bert.pooler.dense.weight.grad.abs().sum() > 0    # SOP trains the pooler


def test_pretrain_mlm_sop_loads_in_hf(tmp_path, tok):
    transformers = pytest.importorskip("transformers")
    from encoder_book.bert import (
        BertForMaskedLM,
        BertForPreTraining,
        BertForSequenceClassification,
    )
    out = tmp_path / "sop"
    cfg = TrainConfig(device="cpu", batch_size=8, eval_batch_size=32, lr=2e-3, save_every=3, progress=False)
    m = pretrain("tiny", out, tokenizer=tok, train_config=cfg, block_size=32, progress=False, max_steps=6,
                 objective="mlm+sop", config=tiny_config(1, position_embedding_type="absolute"))
    assert m["finished"] and m["objective"] == "mlm+sop" and 0 <= m["eval_sop_accuracy"] <= 1
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
    hf = transformers.BertForPreTraining.from_pretrained(out).eval()
    ours = BertForPreTraining.from_pretrained(out).eval()
    enc = tok(["the film is [MASK] ."], ["so it was ."], return_tensors="pt")
    with torch.no_grad():
        a, b = hf(**enc), ours(**enc)
    torch.testing.assert_close(a.prediction_logits, b.prediction_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.seq_relationship_logits, b.seq_relationship_logits, atol=1e-5, rtol=1e-4)
    # the folder serves fine-tuning (pooler included) and prompts (MLM head) as well
    with pytest.warns(UserWarning, match="not in the checkpoint"):     # only the new classifier
        cls = BertForSequenceClassification.from_pretrained(out, num_labels=2)
    torch.testing.assert_close(cls.bert.pooler.dense.weight, ours.bert.pooler.dense.weight)
    mlm = BertForMaskedLM.from_pretrained(out)
    torch.testing.assert_close(mlm.cls.bias, ours.cls.bias)
    torch.testing.assert_close(mlm.cls.dense.weight, ours.cls.dense.weight)
