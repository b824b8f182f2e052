"Prompts (chapter 8): templates, verbalizers, cloze scores, calibration, few-shot, CLI."
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from encoder_book.bert import BertConfig, BertForMaskedLM, BertModel
from encoder_book.cli import main
from encoder_book.core import tiny_sentiment
from encoder_book.data import LabelledData
from encoder_book.finetuning import load_classifier, train_classifier
from encoder_book.prompting import (
    PromptClassifier,
    PromptError,
    Template,
    Verbalizer,
    cloze_logits,
    content_free_prior,
    demonstrations,
    encode_prompts,
    prompt_finetune,
    sample_k_shot,
    zero_shot,
)
from encoder_book.tokenizer import WordPieceTokenizer
from encoder_book.train import TrainConfig

T = "{text} it was [MASK] ."
V = "negative=dull,positive=charming|moving"


@pytest.fixture(scope="module")
def ptok():
    texts = tiny_sentiment(600, seed=3)[0] + ["it was", "a movie"]
    tok = WordPieceTokenizer.train(texts, vocab_size=400, progress=False)
    for w in ("dull", "charming", "moving"):
        assert tok.tokenize(w) == [w]
    return tok


@pytest.fixture(scope="module")
def mlm(ptok):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=ptok.vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=128, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    return BertForMaskedLM(cfg).eval()


@pytest.fixture(scope="module")
def mlm_dir(mlm, ptok, tmp_path_factory):
    d = tmp_path_factory.mktemp("mlm")
    mlm.save_pretrained(d)
    ptok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tsv(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    out = {}
    for split, (n, seed) in {"train": (80, 0), "dev": (40, 1)}.items():
        texts, labels = tiny_sentiment(n, seed=seed)
        p = d / f"{split}.tsv"
        p.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
        out[split] = p
    return out


def test_template_slots():
    t = Template(T)
    assert t.parts() == ["{text}", " it was ", "[MASK]", " ."]
    assert t.format("a film", "great") == "a film it was great ."
    for bad, what in [("{text} it was great .", r"\[MASK\] exactly once, not 0"),
                      ("[MASK] [MASK] {text}", r"\[MASK\] exactly once, not 2"),
                      ("it was [MASK] .", r"\{text\} exactly once, not 0")]:
        with pytest.raises(PromptError, match=what):
            Template(bad)


def test_verbalizer_parse_and_order():
    v = Verbalizer.parse(V)
    assert v.words == {"negative": ["dull"], "positive": ["charming", "moving"]}
    assert v.labels == ["negative", "positive"]
    assert v.for_labels({0: "positive", 1: "negative"}).labels == ["positive", "negative"]
    with pytest.raises(PromptError, match="no word for label.*'neutral'"):
        v.for_labels({0: "negative", 1: "neutral", 2: "positive"})
    with pytest.raises(PromptError, match="not labels of the data"):
        v.for_labels({0: "negative"})
    for bad in ("negative=dull,positive", "=dull", "a=", ""):
        with pytest.raises(PromptError):
            Verbalizer.parse(bad)
    with pytest.raises(PromptError, match="empty word"):
        Verbalizer({"a": ["dull", " "]})


def test_pieces_unknown_and_split_words(ptok):
    with pytest.raises(PromptError, match="'qqqxz'.*not in the vocabulary"):
        Verbalizer({"a": "qqqxz", "b": "dull"}).pieces(ptok)
    split = next(w for w in ("charmingly", "dullness", "moviegoers", "unmoving")
                 if len(ptok.tokenize(w)) > 1)
    v = Verbalizer({"a": split, "b": "dull"})
    assert len(v.pieces(ptok)[0][0]) > 1
    with pytest.raises(PromptError, match="word pieces"):
        v.pieces(ptok, single=True)


def test_encode_prompts_matches_tokenizer_and_truncates(ptok):
    t = Template(T)
    texts = tiny_sentiment(20, seed=9)[0]
    for text, ids in zip(texts, encode_prompts(ptok, texts, t)):
        assert ids == ptok(t.format(text))["input_ids"]
    long = " ".join(texts) * 3
    ids = encode_prompts(ptok, [long], t, max_length=24)[0]
    assert len(ids) == 24 and ids.count(ptok.mask_token_id) == 1
    assert ids[-1] == ptok.sep_token_id and ids[-3:-1] == ptok.convert_tokens_to_ids(
        ptok.tokenize("[MASK] ."))
    # a [MASK] typed in the text is not a slot
    ids = encode_prompts(ptok, ["a [MASK] movie"], t)[0]
    assert ids.count(ptok.mask_token_id) == 1 and ptok.unk_token_id in ids
    assert encode_prompts(ptok, ["x"], t, n_masks=3)[0].count(ptok.mask_token_id) == 3
    with pytest.raises(PromptError, match="no room for the text"):
        encode_prompts(ptok, ["x"], t, max_length=6)


def test_cloze_logits_equal_a_manual_forward(mlm, ptok):
    v = Verbalizer.parse(V)
    texts = tiny_sentiment(6, seed=4)[0]
    got = cloze_logits(mlm, ptok, texts, T, v, batch_size=4)
    assert got.shape == (6, 2)
    for i, text in enumerate(texts):
        x = torch.tensor([ptok(Template(T).format(text))["input_ids"]])
        with torch.no_grad():
            logp = mlm(input_ids=x).logits[0].log_softmax(-1)
        at = x[0].tolist().index(ptok.mask_token_id)
        ids = ptok.convert_tokens_to_ids(["dull", "charming", "moving"])
        want = [logp[at, ids[0]], torch.logaddexp(logp[at, ids[1]], logp[at, ids[2]])]
        torch.testing.assert_close(got[i], torch.stack(want), atol=1e-5, rtol=0)


def test_multi_piece_word_is_the_mean_of_its_pieces(mlm, ptok):
    split = next(w for w in ("charmingly", "dullness", "moviegoers", "unmoving")
                 if len(ptok.tokenize(w)) == 2)
    v = Verbalizer({"a": split, "b": "dull"})
    text = "the plot is dull"
    got = cloze_logits(mlm, ptok, [text], T, v)[0]
    x = torch.tensor(encode_prompts(ptok, [text], Template(T), n_masks=2))
    with torch.no_grad():
        logp = mlm(input_ids=x).logits[0].log_softmax(-1)
    at = [i for i, t in enumerate(x[0].tolist()) if t == ptok.mask_token_id]
    p = ptok.convert_tokens_to_ids(ptok.tokenize(split))
    want = (logp[at[0], p[0]] + logp[at[1], p[1]]) / 2
    torch.testing.assert_close(got[0], want, atol=1e-5, rtol=0)
    assert torch.isfinite(got[1])  # the one-piece word: its own forward


def test_calibration_is_uniform_on_the_content_free_input(mlm, ptok):
    v = Verbalizer.parse(V)
    r = zero_shot(mlm, ptok, ["N/A"], T, v, calibrate=True, content_free=["N/A"])
    torch.testing.assert_close(r["probs"], torch.full((1, 2), 0.5))
    texts = tiny_sentiment(30, seed=2)[0]
    raw, cal = zero_shot(mlm, ptok, texts, T, v), zero_shot(mlm, ptok, texts, T, v, True)
    prior = content_free_prior(mlm, ptok, T, v)
    torch.testing.assert_close(cal["prior"], prior)
    assert torch.equal(cal["preds"], (raw["probs"] / prior).argmax(-1))
    assert raw["prior"] is None


def test_sample_k_shot_is_stratified_seeded_and_checked():
    labels = [0] * 30 + [1] * 10 + [2] * 5
    idx = sample_k_shot(labels, 4, seed=7)
    assert np.bincount(np.asarray(labels)[idx]).tolist() == [4, 4, 4]
    assert np.array_equal(idx, sample_k_shot(labels, 4, seed=7))
    assert not np.array_equal(idx, sample_k_shot(labels, 4, seed=8))
    assert len(set(idx.tolist())) == 12
    with pytest.raises(PromptError, match="class 2 has only 5"):
        sample_k_shot(labels, 6)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(PromptError, match="whole number"):
            sample_k_shot(labels, bad)


def test_demonstrations_fill_in_the_label_word():
    data = LabelledData(["bad one", "good one", "so bad"], [0, 1, 0])
    v = Verbalizer.parse("n=dull,p=charming")
    demos = demonstrations(data, T, v, seed=0)
    assert len(demos) == 2 and sorted(d.split(" it was ")[1] for d in demos) == [
        "charming .", "dull ."]


def test_prompt_classifier_logits_and_refusals(mlm, ptok):
    v = Verbalizer.parse(V)
    pc = PromptClassifier(mlm, ptok, T, v).eval()
    texts = tiny_sentiment(5, seed=6)[0]
    batch = pc.encode(texts, [0, 1, 0, 1, 1]).collate(np.arange(5))
    with torch.no_grad():
        out = pc(**batch)
    torch.testing.assert_close(out.logits, cloze_logits(mlm, ptok, texts, T, v),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, batch["labels"]))
    assert pc.id2label == {0: "negative", 1: "positive"}
    split = next(w for w in ("charmingly", "dullness", "unmoving")
                 if len(ptok.tokenize(w)) > 1)
    with pytest.raises(PromptError, match="one length in word pieces"):
        PromptClassifier(mlm, ptok, T, Verbalizer({"a": split, "b": "dull"}))
    # calibrated: softmax of the logits is zero_shot's calibrated distribution
    pc.calibrate()
    with torch.no_grad():
        p = pc(**batch).logits.softmax(-1)
    torch.testing.assert_close(p, zero_shot(mlm, ptok, texts, T, v, True)["probs"])
    pc.calibrate(None)
    assert pc.log_prior is None


def test_prompt_finetune_learns_saves_and_is_deterministic(mlm_dir, tmp_path):
    texts, labels = tiny_sentiment(64, seed=0)
    train = LabelledData(texts, labels)
    cfg = lambda: TrainConfig(lr=3e-3, max_steps=30, batch_size=16, device="cpu",
                              progress=False, save_every=None, seed=0)
    v = Verbalizer.parse(V)
    a, hist = prompt_finetune(mlm_dir, train, T, v, cfg())
    b, _ = prompt_finetune(mlm_dir, train, T, v, cfg())
    losses = [r["loss"] for r in hist if "loss" in r]
    assert losses[-1] < losses[0]
    data = a.encode(texts, labels).collate(np.arange(8))
    with torch.no_grad():
        la, lb = a(**data).logits, b(**data).logits
    assert torch.equal(la, lb)  # same seed, same run
    a.save_pretrained(tmp_path / "p")
    c = PromptClassifier.from_pretrained(tmp_path / "p")
    assert json.loads((tmp_path / "p" / "prompt.json").read_text())["template"] == T
    with torch.no_grad():
        torch.testing.assert_close(c(**data).logits, la)
    with pytest.raises(PromptError, match="no prompt.json"):
        PromptClassifier.from_pretrained(mlm_dir)


def test_hf_masked_lm_gives_the_same_cloze_scores(mlm, ptok):
    pytest.importorskip("transformers")
    v = Verbalizer.parse(V)
    texts = tiny_sentiment(4, seed=8)[0]
    ours = cloze_logits(mlm, ptok, texts, T, v)
    torch.testing.assert_close(cloze_logits(mlm.to_hf(), ptok, texts, T, v), ours,
                               atol=1e-5, rtol=0)


def test_train_classifier_with_a_prompt(mlm_dir, tmp_path, ptok):
    texts, labels = tiny_sentiment(60, seed=0)
    dev = LabelledData(*tiny_sentiment(30, seed=1))
    m = train_classifier("transformer", LabelledData(texts, labels), dev, init=mlm_dir,
                         prompt=T, verbalizer=V, epochs=1, progress=False,
                         out_dir=tmp_path / "run")
    assert m["label_names"] == ["negative", "positive"] and m["prompt"] == T
    model, tok, id2label = load_classifier(tmp_path / "run")
    assert isinstance(model, PromptClassifier) and id2label == {0: "negative", 1: "positive"}
    with pytest.raises(ValueError, match="give both or neither"):
        train_classifier("transformer", LabelledData(texts, labels), dev, init=mlm_dir,
                         prompt=T, progress=False)
    with pytest.raises(ValueError, match="needs init"):
        train_classifier("transformer", LabelledData(texts, labels), dev, prompt=T,
                         verbalizer=V, progress=False)
    enc = tmp_path / "encoder"
    BertModel(BertConfig(vocab_size=ptok.vocab_size, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(enc)
    ptok.save_pretrained(enc)
    with pytest.raises(ValueError, match="needs a masked LM"):
        train_classifier("transformer", LabelledData(texts, labels), dev, init=enc,
                         prompt=T, verbalizer=V, progress=False)


def _run(capsys, argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_zero_shot_finetune_and_predict(mlm_dir, tsv, tmp_path, capsys):
    code, out, err = _run(capsys, ["evaluate", "--model", mlm_dir, "--data", tsv["dev"],
                                   "--prompt", T, "--verbalizer", V, "--calibrate",
                                   "--save", tmp_path / "zs.json"])
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    texts, labels = tiny_sentiment(40, seed=1)
    mlm = BertForMaskedLM.from_pretrained(mlm_dir)
    tok = WordPieceTokenizer.from_pretrained(mlm_dir)
    r = zero_shot(mlm, tok, texts, T, Verbalizer.parse(V), calibrate=True)
    want = (r["preds"] == torch.tensor(labels)).float().mean().item()
    assert abs(report["accuracy"] - want) < 1e-6
    code, out, err = _run(capsys, ["finetune", "--train", tsv["train"], "--dev", tsv["dev"],
                                   "--model", "transformer", "--init", mlm_dir, "--prompt",
                                   T, "--verbalizer", V, "--epochs", "1",
                                   "--out", tmp_path / "run"])
    assert code == 0, err
    assert (tmp_path / "run" / "prompt.json").is_file()
    src = tmp_path / "texts.txt"
    src.write_text("a dull film\nreally charming\n")
    code, out, err = _run(capsys, ["predict", "--model", tmp_path / "run", src])
    assert code == 0, err
    rows = out.strip().splitlines()
    assert rows[0].startswith("label\tscore\tp_negative\tp_positive") and len(rows) == 3


def test_cli_prompt_errors_are_one_line(mlm_dir, tsv, tmp_path, capsys):
    cases = [
        (["evaluate", "--model", mlm_dir, "--data", tsv["dev"], "--prompt", T],
         "--prompt and --verbalizer go together"),
        (["evaluate", "--model", mlm_dir, "--data", tsv["dev"]], "give a prompt"),
        (["evaluate", "--model", mlm_dir, "--data", tsv["dev"], "--prompt",
          "it was [MASK]", "--verbalizer", V], "exactly once"),
        (["evaluate", "--model", mlm_dir, "--data", tsv["dev"], "--prompt", T,
          "--verbalizer", "negative=qqqxz,positive=dull"], "not in the vocabulary"),
        (["finetune", "--train", tsv["train"], "--dev", tsv["dev"], "--model",
          "transformer", "--init", mlm_dir, "--prompt", T, "--verbalizer",
          "a=dull,b=charming,c=moving", "--out", tmp_path / "x"], "has 3"),
    ]
    for argv, what in cases:
        code, out, err = _run(capsys, argv)
        assert code == 2, (argv, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert what in err, err
    assert not (tmp_path / "x").exists()  # nothing left from the refused run
