"""encoder_book.pretraining, issue 19's levers: honest MLM metrics and WikiText's <unk>,
ELECTRA, corpora and stages, precision, HF-loadable default positions, bad input, and
bit-identical stop/resume for MLM stages and ELECTRA."""

import json

import pytest
import torch
from safetensors.torch import load_file

import encoder_book.pretraining as pt
from encoder_book.bert import BertConfig, BertForMaskedLM, BertModel
from encoder_book.data import DataError, DataNotFound, pack_corpus
from encoder_book.pretraining import (
    KINDS,
    ElectraPretrainer,
    MLMMasker,
    evaluate_mlm,
    pretrain,
    pretrain_precision,
    small_config,
    unk_as_special,
)
from encoder_book.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ENCODER_BOOK_CACHE", str(tmp_path / "cache"))


def tiny_config(vocab_size=1, **kw):
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        **kw,
    )


def run(out, tok, **kw):
    cfg = TrainConfig(
        device="cpu",
        batch_size=8,
        eval_batch_size=32,
        lr=2e-3,
        save_every=3,
        progress=False,
        **kw.pop("train", {}),
    )
    kw.setdefault("config", tiny_config())
    return pretrain(
        kw.pop("corpus", "tiny"),
        out,
        tokenizer=tok,
        train_config=cfg,
        block_size=kw.pop("block_size", 32),
        progress=False,
        **kw,
    )


def same_weights(a, b):
    wa, wb = (
        load_file(str(a / "model.safetensors")),
        load_file(str(b / "model.safetensors")),
    )
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture()
def task_file(tmp_path, texts):
    p = tmp_path / "task.tsv"
    rows = "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(texts[-300:]))
    p.write_text("sentence\tlabel\n" + rows)
    return p


# --- honest metrics


def test_accuracy_per_kind_adds_up(tok, texts):
    data = pack_corpus(tok, texts[:80], 32, cache=False)
    model = BertForMaskedLM(tiny_config(tok.vocab_size))
    r = evaluate_mlm(model, data, MLMMasker(tok), batch_size=16)
    assert sum(r[f"{k}_tokens"] for k in KINDS) == r["masked_tokens"]
    assert r["mask_tokens"] > r["random_tokens"] > 0 and r["kept_tokens"] > 0
    right = sum(r[f"{k}_accuracy"] * r[f"{k}_tokens"] for k in KINDS)
    assert right == pytest.approx(r["accuracy"] * r["masked_tokens"])
    only_mask = evaluate_mlm(
        model, data, MLMMasker(tok, mask_fraction=1.0, random_fraction=0.0)
    )
    assert only_mask["random_tokens"] == only_mask["kept_tokens"] == 0
    only_kept = evaluate_mlm(
        model, data, MLMMasker(tok, mask_fraction=0.0, random_fraction=0.0)
    )
    assert only_kept["kept_tokens"] == only_kept["masked_tokens"] > 0


def test_masker_mode_is_explicit(tok):
    ids = torch.randint(5, tok.vocab_size, (8, 32))
    m = MLMMasker(tok)
    batch = {"input_ids": ids}
    a, b = m(batch, training=False)["labels"], m(batch, training=False)["labels"]
    assert torch.equal(a, b)  # evaluation masks are fixed
    torch.manual_seed(0)
    c = m(batch, training=True)["labels"]
    d = m(batch, training=True)["labels"]
    assert not torch.equal(c, d)  # training masks are fresh
    with torch.no_grad():  # the grad mode decides nothing: no argument means training
        torch.manual_seed(0)
        assert torch.equal(m(batch)["labels"], c)


def test_wikitext_unk_is_one_special_token(tmp_path, tok):
    texts = unk_as_special(["a <unk> river flows", "<unk>"], tok.unk_token)
    assert texts == ["a [UNK] river flows", "[UNK]"]
    ids = tok.encode(texts[0])
    assert ids.count(tok.unk_token_id) == 1 and MLMMasker(tok).special[tok.unk_token_id]
    corpus = tmp_path / "wiki.txt"
    corpus.write_text(
        "".join(f"the river <unk> flows into the sea {i}\n" for i in range(400))
    )
    run(
        tmp_path / "u",
        None,
        corpus=str(corpus),
        vocab_size=60,
        max_steps=2,
        unk_as_special_token=True,
    )
    vocab = (tmp_path / "u" / "vocab.txt").read_text().split("\n")
    assert "<" not in vocab and "unk" not in vocab  # no pieces of <unk> learned


# --- ELECTRA


def test_electra_shares_embeddings_and_learns_from_every_token(tok):
    torch.manual_seed(0)
    model = ElectraPretrainer(tiny_config(tok.vocab_size))
    assert model.generator.bert.embeddings is model.discriminator.embeddings
    assert model.generator.config.num_hidden_layers == 1
    ids = torch.randint(5, tok.vocab_size, (4, 32))
    batch = MLMMasker(tok)(
        {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, training=True
    )
    out = model(**batch)
    assert out.logits.shape == (4, 32) and torch.isfinite(out.loss)
    out.loss.backward()
    for part in (
        model.discriminator.encoder,
        model.generator.bert.encoder,
        model.rtd_head,
        model.discriminator.embeddings,
    ):
        assert any(
            p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()
        )
    with pytest.raises(ValueError, match="labels"):
        model(ids)
    with pytest.raises(ValueError, match="hidden_size"):
        ElectraPretrainer(
            tiny_config(tok.vocab_size),
            tiny_config(
                tok.vocab_size,
            ).__class__(
                vocab_size=tok.vocab_size,
                hidden_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=32,
                max_position_embeddings=64,
            ),
        )


def test_electra_pretrain_saves_an_encoder_hf_loads(tmp_path, tok, vocab_dir):
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "e"
    m = run(out, str(vocab_dir), objective="electra", max_steps=4)
    assert m["finished"] and m["objective"] == "electra" and 0 <= m["rtd_accuracy"] <= 1
    assert "eval_generator_mask_accuracy" in m
    with pytest.warns(UserWarning, match="pooler"):  # ELECTRA has no pooler
        ours = BertModel.from_pretrained(out).eval()
    enc = {"input_ids": torch.tensor([tok.encode("the film is good")])}
    hf = transformers.BertModel.from_pretrained(out).eval()
    electra = transformers.ElectraForPreTraining.from_pretrained(out / "electra").eval()
    with torch.no_grad():
        a = ours(**enc).last_hidden_state
        torch.testing.assert_close(hf(**enc).last_hidden_state, a, atol=1e-5, rtol=0)
        torch.testing.assert_close(
            electra.electra(**enc).last_hidden_state, a, atol=1e-5, rtol=0
        )
    from safetensors.torch import load_model

    full = ElectraPretrainer(BertConfig.from_pretrained(out)).eval()
    load_model(full, str(out / "training" / "stage-1" / "model.safetensors"))
    with torch.no_grad():
        head = full.rtd_head(full.discriminator(**enc).last_hidden_state).squeeze(-1)
        torch.testing.assert_close(electra(**enc).logits, head, atol=1e-5, rtol=0)
    from encoder_book.bert import BertForSequenceClassification

    with pytest.warns(UserWarning):  # a new head (and pooler) at random
        clf = BertForSequenceClassification.from_pretrained(out)  # finetune --init
    torch.testing.assert_close(
        clf.bert.embeddings.word_embeddings.weight,
        ours.embeddings.word_embeddings.weight,
    )


def test_electra_resume_is_bit_identical(tmp_path, vocab_dir):
    a = run(tmp_path / "a", str(vocab_dir), objective="electra", max_steps=6)
    b = run(
        tmp_path / "b",
        str(vocab_dir),
        objective="electra",
        max_steps=6,
        train={"stop_after": 3},
    )
    assert not b["finished"] and not (tmp_path / "b" / "metrics.json").exists()
    assert not (tmp_path / "b" / "model.safetensors").exists()
    b = run(
        tmp_path / "b", str(vocab_dir), objective="electra", max_steps=6, resume=True
    )
    assert same_weights(tmp_path / "a", tmp_path / "b")
    assert a["final_loss"] == b["final_loss"] and a["rtd_accuracy"] == b["rtd_accuracy"]


# --- corpora, stages, short blocks first


def test_stages_with_a_labelled_file_and_resume(tmp_path, vocab_dir, task_file):
    kw = {"stages": [("tiny", 6), (str(task_file), 4)], "short_block_size": 16}
    a = run(tmp_path / "a", str(vocab_dir), **kw)
    assert [(s["steps"], s["block_size"]) for s in a["stages"]] == [
        (5, 16),
        (1, 32),
        (4, 32),
    ]
    assert a["steps"] == 10 and a["finished"]
    for stop in (3, 7):  # in stage 1 and in stage 3
        d = tmp_path / f"stop{stop}"
        b = run(d, str(vocab_dir), train={"stop_after": stop}, **kw)
        assert not b["finished"] and b["steps"] == stop
        b = run(d, str(vocab_dir), resume=True, **kw)
        assert b["finished"] and same_weights(tmp_path / "a", d)
        assert b["final_loss"] == a["final_loss"]
    with pytest.raises(ValueError, match="max_steps or stages"):
        run(tmp_path / "x", str(vocab_dir), max_steps=3, **kw)
    with pytest.raises(ValueError, match="positive integer"):
        run(tmp_path / "x", str(vocab_dir), stages=[("tiny", 0)])


def test_a_stage_can_have_its_own_block_size(tmp_path, vocab_dir, task_file):
    kw = {"stages": [("tiny", 4), (str(task_file), 3, 16)], "short_block_size": 16}
    a = run(tmp_path / "a", str(vocab_dir), **kw)
    assert [(s["steps"], s["block_size"]) for s in a["stages"]] == [
        (3, 16),
        (1, 32),
        (3, 16),
    ]
    assert a["finished"] and a["steps"] == 7
    for bad, match in (
        ([("tiny", 2, 0)], "block_size must be a positive integer"),
        ([("tiny", 2, 4)], r"block_size must be in \[8"),
        ([("tiny", 2, 10**6)], "max_position_embeddings"),
        ([("tiny", 2, 16, 1)], "each stage is"),
    ):
        with pytest.raises(ValueError, match=match):
            run(tmp_path / "x", str(vocab_dir), stages=bad)
    assert not (tmp_path / "x").exists()


def test_several_corpora_feed_the_tokenizer(tmp_path, task_file):
    words = tmp_path / "words.txt"
    words.write_text("".join(f"zyzzyva quokka number {i}\n" for i in range(300)))
    run(
        tmp_path / "m",
        None,
        corpus=[str(words), str(task_file)],
        vocab_size=120,
        max_steps=2,
    )
    vocab = (tmp_path / "m" / "vocab.txt").read_text().split("\n")
    assert "quokka" in vocab or "##kka" in vocab or "qu" in vocab


# --- bad input: one clear error, nothing written


@pytest.mark.parametrize(
    "kind",
    [
        "empty",
        "binary",
        "latin1",
        "missing",
        "stage",
        "objective",
        "schedule",
        "bf16",
        "blank",
        "block",
    ],
)
def test_bad_input_writes_nothing(tmp_path, kind, monkeypatch, vocab_dir):
    bad = tmp_path / "bad.txt"
    kw = {"corpus": str(bad), "max_steps": 2}
    if kind == "empty":
        bad.write_bytes(b"")
        err = DataError
    elif kind == "blank":
        bad.write_text("\n \n\n")
        err = DataError
    elif kind == "binary":
        bad.write_bytes(b"\x00\x01\x02abc\x00" * 50)
        err = DataError
    elif kind == "latin1":
        bad.write_bytes("caf\xe9 au lait\n".encode("latin-1") * 20)
        err = DataError
    elif kind == "missing":
        err = DataNotFound
    elif kind == "stage":
        kw = {"stages": [("tiny", 2), (str(tmp_path / "nope.tsv"), 2)]}
        err = DataNotFound
    elif kind == "objective":
        kw = {"objective": "bert", "max_steps": 2}
        err = ValueError
    elif kind == "schedule":
        kw = {"schedule": "cosine", "max_steps": 2}
        err = ValueError
    elif kind == "block":
        kw = {"max_steps": 2, "block_size": 128}  # tiny_config holds 64 positions
        err = ValueError
    else:
        monkeypatch.setattr(pt, "cpu_has_native_bf16", lambda: False)
        kw = {"precision": "bf16", "max_steps": 2}
        err = ValueError
    out = tmp_path / "out"
    with pytest.raises(err) as info:
        run(out, None, **kw)
    assert "\n" not in str(info.value).strip()
    assert not out.exists() or not any(out.iterdir())


# --- precision and positions


def test_precision_choice(monkeypatch):
    monkeypatch.setattr(pt, "cpu_has_native_bf16", lambda: True)
    assert (
        pretrain_precision("cpu") == "bf16"
        and pretrain_precision("cpu", "fp32") == "fp32"
    )
    monkeypatch.setattr(pt, "cpu_has_native_bf16", lambda: False)
    assert pretrain_precision("cpu") == "fp32"
    for bad in ("bf16", "fp16", "int8"):
        with pytest.raises(ValueError, match="precision"):
            pretrain_precision("cpu", bad)


@pytest.mark.skipif(not pt.cpu_has_native_bf16(), reason="no native bf16 on this CPU")
def test_bf16_run_resumes_bit_identical(tmp_path, vocab_dir):
    a = run(tmp_path / "a", str(vocab_dir), precision="bf16", max_steps=4)
    assert a["precision"] == "bf16"
    run(
        tmp_path / "b",
        str(vocab_dir),
        precision="bf16",
        max_steps=4,
        train={"stop_after": 2},
    )
    run(tmp_path / "b", str(vocab_dir), precision="bf16", max_steps=4, resume=True)
    assert same_weights(tmp_path / "a", tmp_path / "b")


def test_absolute_small_model_loads_in_hf_with_equal_logits(tmp_path, vocab_dir, tok):
    "small_config with absolute positions, started as a sinusoid: HF loads it as is."
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "d"
    m = run(
        out,
        str(vocab_dir),
        config=small_config(tok.vocab_size, position_embedding_type="absolute"),
        position_init="sinusoidal",
        max_steps=2,
        dropout=0.0,
        schedule="one-cycle",
        batch_size=8,
    )
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["position_embedding_type"] == "absolute" and cfg["hidden_size"] == 256
    assert (
        cfg["hidden_dropout_prob"] == 0.1 and m["dropout"] == 0.0
    )  # saved for fine-tuning
    hf = transformers.BertForMaskedLM.from_pretrained(out).eval()
    ours = BertForMaskedLM.from_pretrained(out).eval()
    enc = {"input_ids": torch.tensor([tok.encode("the film is [MASK] .")])}
    with torch.no_grad():
        torch.testing.assert_close(
            hf(**enc).logits, ours(**enc).logits, atol=1e-5, rtol=0
        )
    pos = ours.bert.embeddings.position_embeddings.weight  # started as a sinusoid
    assert pos[0, 1].item() == pytest.approx(0.02 * 2**0.5, abs=0.01)


@pytest.mark.parametrize(
    "change",
    [{"position_embedding_type": "rotary"}, {"position_embedding_type": "sinusoidal"},
     {"pre_layer_norm": True}],
)
def test_configs_hf_cannot_hold_are_refused_by_transformers(tmp_path, tok, change):
    transformers = pytest.importorskip("transformers")
    model = BertForMaskedLM(tiny_config(tok.vocab_size, **change)).eval()
    model.save_pretrained(tmp_path / "r")
    with pytest.raises((RuntimeError, ValueError), match="(?i)size|mismatch"):
        transformers.BertForMaskedLM.from_pretrained(tmp_path / "r")
    with pytest.raises((RuntimeError, ValueError), match="(?i)size|mismatch"):
        transformers.BertModel.from_pretrained(tmp_path / "r")
    back = BertForMaskedLM.from_pretrained(tmp_path / "r")  # ours loads it, exactly
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    torch.testing.assert_close(back(input_ids=ids).logits, model(input_ids=ids).logits)


def test_throughput_script_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "throughput.py"
    args = [
        "--steps",
        "1",
        "--batch",
        "2",
        "--block",
        "16",
        "--hidden",
        "64",
        "--layers",
        "1",
        "--vocab",
        "100",
    ]
    r = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    got = {(row["objective"], row["precision"]) for row in result["rows"]}
    assert got == {(o, p) for o in ("mlm", "electra") for p in ("fp32", "bf16")}
    assert all(row["tokens_per_second"] > 0 for row in result["rows"])


def test_rotary_mlm_pretrain_saves_a_roformer_copy(tmp_path, tok, vocab_dir):
    "HF's BERT refuses a rotary folder; OUT/roformer loads as RoFormerForMaskedLM."
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "r"
    cfg = tiny_config(position_embedding_type="rotary")
    m = run(out, str(vocab_dir), config=cfg, max_steps=3)
    assert m["finished"]
    ours = BertForMaskedLM.from_pretrained(out).eval()
    hf = transformers.RoFormerForMaskedLM.from_pretrained(out / "roformer").eval()
    enc = {"input_ids": torch.tensor([tok.encode("the film is good, not bad")])}
    with torch.no_grad():
        torch.testing.assert_close(
            hf(**enc).logits, ours(**enc).logits, atol=1e-5, rtol=0
        )
    # learned absolute positions: transformers' BERT loads OUT itself, no copy
    m = run(tmp_path / "a", str(vocab_dir), max_steps=3)
    assert m["finished"] and not (tmp_path / "a" / "roformer").exists()
