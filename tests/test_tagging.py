"Tagging (chapter 9): the CoNLL reader, spans, conlleval scores, alignment, taggers."

import random

import numpy as np
import pytest
import torch

from encoder_book.data import ArgumentError, DataError, DataNotFound
from encoder_book.tagging import (
    LSTMTagger,
    LSTMTaggerConfig,
    MostFrequentTagger,
    Sentence,
    TaggedData,
    align_labels,
    conll_file,
    entity_scores,
    error_analysis,
    iob1_to_iob2,
    load_tagger,
    predict_tags,
    read_conll,
    spans,
    train_tagger,
)
from encoder_book.tokenizer import WordPieceTokenizer

GOOD = (
    "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\n"
    "-DOCSTART- -X- -X- O\n\nPeter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n\n\n"
)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# --- the reader


def test_read_conll_skips_docstart_and_blank_lines(tmp_path):
    s = read_conll(write(tmp_path, "a.txt", GOOD))
    assert [x.words for x in s] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [x.tags for x in s] == [["I-ORG", "O"], ["I-PER", "I-PER"]]
    assert read_conll(tmp_path / "a.txt", column=2)[0].tags == ["I-NP", "I-VP"]
    assert read_conll(tmp_path / "a.txt", column=1, iob=False)[1].tags == [
        "NNP",
        "NNP",
    ]


def test_read_conll_without_final_blank_line_and_crlf(tmp_path):
    s = read_conll(write(tmp_path, "b.txt", "EU NNP I-NP I-ORG\r\nsays VBZ I-VP O"))
    assert s == [Sentence(["EU", "says"], ["I-ORG", "O"])]


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("EU NNP I-NP I-ORG\nrejects VBZ O\n", 2, "3 columns"),
        ("EU NNP I-NP I-ORG\n\nNew York NNP I-NP I-LOC\n", 3, "5 columns"),
        ("EU NNP I-NP S-ORG\n", 1, "unknown tag scheme"),
        ("EU NNP I-NP I-ORG\nsays VBZ I-VP PER\n", 2, "unknown tag scheme"),
    ],
)
def test_read_conll_errors_name_file_and_line(tmp_path, text, line, words):
    p = write(tmp_path, "bad.txt", text)
    with pytest.raises(DataError) as e:
        read_conll(p)
    assert str(e.value).startswith(f"{p}, line {line}: ")
    assert words in str(e.value) and e.value.line == line


def test_read_conll_bad_column_and_empty(tmp_path):
    with pytest.raises(DataError, match="no column 4"):
        read_conll(write(tmp_path, "a.txt", GOOD), column=4)
    with pytest.raises(DataError, match="no sentences"):
        read_conll(write(tmp_path, "d.txt", "-DOCSTART- -X- O O\n\n"))
    with pytest.raises(DataError, match="empty"):
        read_conll(write(tmp_path, "e.txt", "\n"))
    with pytest.raises(ValueError, match="one tag per word"):
        Sentence(["a", "b"], ["O"])


def test_conll_file_uses_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ENCODER_BOOK_DATA", str(tmp_path))
    with pytest.raises(DataNotFound, match="conll2003/eng.testb"):
        conll_file("test")
    (tmp_path / "conll2003").mkdir()
    write(tmp_path / "conll2003", "eng.testb", GOOD)
    assert conll_file("test") == conll_file("testb") == tmp_path / "conll2003/eng.testb"
    assert conll_file("dev", path=tmp_path / "conll2003/eng.testb").name == "eng.testb"
    with pytest.raises(ValueError, match="split must be one of"):
        conll_file("validation")
    with pytest.raises(DataNotFound):
        conll_file("train", path=tmp_path / "nothing.txt")


# --- spans and schemes


def random_iob1(rng, n):
    "IOB1 tags as the CoNLL files have them: B- only after an entity of its type."
    tags, prev = [], None
    for _ in range(n):
        r = rng.random()
        if r < 0.4:
            tags.append("O")
            prev = None
            continue
        typ = rng.choice(["PER", "LOC", "ORG"])
        new_entity = typ == prev and rng.random() < 0.3
        tags.append(("B-" if new_entity else "I-") + typ)
        prev = typ
    return tags


def test_iob1_and_iob2_give_the_same_spans():
    rng = random.Random(0)
    for _ in range(500):
        tags = random_iob1(rng, rng.randint(0, 12))
        iob2 = iob1_to_iob2(tags)
        assert spans(tags) == spans(iob2)
        assert iob1_to_iob2(iob2) == iob2
        for t, a, b in spans(iob2):  # every IOB2 entity starts with B-
            assert iob2[a] == f"B-{t}"


def test_spans_by_hand():
    tags = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG", "I-LOC", "I-LOC"]
    assert spans(tags) == {
        ("PER", 0, 2),
        ("LOC", 3, 4),
        ("LOC", 4, 5),
        ("ORG", 5, 6),
        ("LOC", 6, 8),
    }
    assert iob1_to_iob2(tags) == [
        "B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG", "B-LOC", "I-LOC"
    ]  # fmt: skip
    assert spans(["B-PER", "I-LOC"]) == {("PER", 0, 1), ("LOC", 1, 2)}
    with pytest.raises(ValueError, match="not IOB"):
        spans(["E-PER"])
    with pytest.raises(ValueError, match="not IOB"):
        iob1_to_iob2(["B-"])


# --- scores


def test_entity_scores_by_hand():
    gold = [["I-PER", "I-PER", "O", "I-LOC"], ["I-ORG", "I-ORG", "O"]]
    pred = [["I-PER", "O", "O", "I-LOC"], ["I-ORG", "I-ORG", "I-MISC"]]
    s = entity_scores(gold, pred)
    assert (s["correct"], s["predicted"], s["gold"]) == (2, 4, 3)
    assert s["precision"] == 0.5 and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(4 / 7)
    assert s["accuracy"] == pytest.approx(5 / 7)
    assert s["per_type"]["LOC"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "support": 1,
    }
    assert s["per_type"]["PER"]["f1"] == 0.0
    assert s["per_type"]["MISC"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
    }
    # a second case: one of two persons found, no false positives
    s = entity_scores([["I-PER", "O", "I-PER"]], [["I-PER", "O", "O"]])
    assert (s["precision"], s["recall"], s["f1"]) == (1.0, 0.5, pytest.approx(2 / 3))
    assert entity_scores([["O"]], [["O"]])["f1"] == 0.0  # nothing to find


def test_entity_scores_refuses_mismatches():
    with pytest.raises(ValueError, match="2 gold sentences but 1"):
        entity_scores([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 0: 2 gold tags but 1"):
        entity_scores([["O", "O"]], [["O"]])


def test_entity_scores_match_seqeval():
    seqeval = pytest.importorskip("seqeval.metrics")
    rng = random.Random(1)
    gold = [iob1_to_iob2(random_iob1(rng, rng.randint(1, 10))) for _ in range(200)]
    pred = [
        [t if rng.random() < 0.8 else rng.choice(["O", "B-PER", "I-LOC"]) for t in g]
        for g in gold
    ]
    ours = entity_scores(gold, pred)
    assert ours["f1"] == pytest.approx(seqeval.f1_score(gold, pred))
    assert ours["precision"] == pytest.approx(seqeval.precision_score(gold, pred))
    report = seqeval.classification_report(gold, pred, output_dict=True)
    for t, v in ours["per_type"].items():
        if v["support"]:
            assert v["f1"] == pytest.approx(report[t]["f1-score"])


# --- baselines and error analysis


def test_most_frequent_tagger():
    train = [
        Sentence(["Washington", "said"], ["I-PER", "O"]),
        Sentence(["in", "Washington"], ["O", "I-LOC"]),
        Sentence(["to", "Washington"], ["O", "I-LOC"]),
    ]
    tagger = MostFrequentTagger(train)
    assert tagger(["Washington", "said", "Paris"]) == ["I-LOC", "O", "O"]
    assert tagger.predict(train[:1]) == [["I-LOC", "O"]]


def test_error_analysis_by_hand():
    gold = [["I-ORG", "I-ORG", "O", "I-PER", "O", "I-LOC", "O", "I-PER"]]
    pred = [["I-ORG", "O", "O", "I-LOC", "O", "O", "I-MISC", "I-LOC"]]
    words = [["EU", "Commission", "and", "Ann", "in", "Rome", ".", "Bo"]]
    e = error_analysis(gold, pred, words, known={"EU", "Commission", "Rome", "Bo"})
    assert e["boundary"] == 1 and e["type"] == 2 and e["missed"] == 1
    assert e["spurious"] == 1 and e["correct"] == 0 and e["both"] == 0
    assert e["unseen_entities"] == 1  # Ann
    e = error_analysis([["I-PER", "I-PER", "O"]], [["O", "I-LOC", "I-LOC"]])
    assert e["both"] == 1 and e["spurious"] == 0 and "recall_seen" not in e


# --- word pieces


@pytest.fixture(scope="module")
def tok():
    return WordPieceTokenizer.train(
        ["Eke heads for Bag", "the heads of the house", "Bag of words for us"] * 5,
        vocab_size=50,
        lowercase=False,
        progress=False,
    )


LABELS = {"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4}


def test_align_labels_first_piece_rule(tok):
    words, tags = ["Ekeus", "heads", "for", "Baghdad"], ["B-PER", "O", "O", "B-LOC"]
    a = align_labels(tok, words, tags, LABELS)
    wid = a["word_ids"]
    assert wid[0] is None and wid[-1] is None
    assert len(wid) > len(words) + 2  # some words have several pieces
    for i, w in enumerate(wid):
        first = w is not None and wid[i - 1] != w
        assert a["labels"][i] == (LABELS[tags[w]] if first else -100)
    assert sorted({w for w in wid if w is not None}) == [0, 1, 2, 3]
    short = align_labels(tok, words, tags, LABELS, max_length=3)
    assert (
        short["labels"] == [-100, LABELS["B-PER"], -100]
        and short["word_ids"][-1] is None
    )
    assert align_labels(tok, words, None, LABELS)["labels"] == [-100] * len(wid)
    with pytest.raises(ValueError, match="B-MISC"):
        align_labels(tok, ["x"], ["B-MISC"], LABELS)


def test_align_labels_word_ids_equal_hf(tok, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok.save_pretrained(tmp_path)
    hf = transformers.BertTokenizerFast.from_pretrained(tmp_path)
    for words in (["Ekeus", "heads", "for", "Baghdad"], ["us", "x", "Bagheads", "."]):
        enc = hf(words, is_split_into_words=True)
        a = align_labels(tok, words, None, LABELS)
        assert a["input_ids"] == enc["input_ids"] and a["word_ids"] == enc.word_ids()


def test_tagged_data_collate_pads_labels(tok):
    data = TaggedData.encode(
        tok,
        [Sentence(["Ekeus", "heads"], ["B-PER", "O"]), Sentence(["for"], ["O"])],
        LABELS,
    )
    assert len(data) == 2 and data.lengths.tolist() == [len(data.ids) - 3, 3]
    b = data.collate(np.array([1, 0]))
    width = int(data.lengths.max())
    assert b["labels"].shape == b["input_ids"].shape == (2, width)
    assert b["labels"][0].tolist() == [-100, 0, -100] + [-100] * (width - 3)
    assert b["attention_mask"].sum(1).tolist() == [3, width]
    assert (b["input_ids"][0, 3:] == tok.pad_token_id).all()


# --- the LSTM tagger


def test_lstm_tagger_ours_equals_torch_and_ignores_padding():
    torch.manual_seed(0)
    ours = LSTMTagger(LSTMTaggerConfig(30, 5, 8, 8, impl="ours")).eval()
    theirs = LSTMTagger(LSTMTaggerConfig(30, 5, 8, 8, impl="torch")).eval()
    theirs.load_state_dict(ours.state_dict())  # same parameter names
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])  # (batch, seq), 0 = padding
    a, b = ours(ids).logits, theirs(ids).logits  # (batch, seq, num_labels)
    assert a.shape == (2, 4, 5)
    mask = ids != 0
    assert torch.allclose(a[mask], b[mask], atol=1e-5)
    assert torch.allclose(ours(ids[1:, :2]).logits, a[1:, :2], atol=1e-6)
    labels = torch.tensor([[0, 1, 2, -100], [3, 4, -100, -100]])
    assert ours(ids, labels=labels).loss.item() == pytest.approx(
        torch.nn.functional.cross_entropy(a[mask], labels[mask]).item(), rel=1e-5
    )
    with pytest.raises(ValueError, match="impl"):
        LSTMTaggerConfig(30, 5, impl="cudnn")


# --- training, saving, loading

NAMES, PLACES = ["Alice", "Bob", "Carol", "Dave"], ["Paris", "Rome", "Oslo"]


def synthetic(n, seed):
    "Sentences such as 'Bob went to Rome .': names are PER, places LOC."
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        name, place = rng.choice(NAMES), rng.choice(PLACES)
        if rng.random() < 0.5:
            words = [name, "went", "to", place, "."]
            tags = ["I-PER", "O", "O", "I-LOC", "O"]
        else:
            words = ["in", place, "the", "friend", name, "said", "so"]
            tags = ["O", "I-LOC", "O", "O", "I-PER", "O", "O"]
        out.append(Sentence(words, tags))
    return out


TRAIN, DEV = synthetic(96, 0), synthetic(24, 1)
OPTS = dict(epochs=4, batch_size=16, vocab_size=60, progress=False, device="cpu")


@pytest.fixture(scope="module")
def transformer_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("transformer")
    return out, train_tagger(
        "transformer", TRAIN, DEV, test=DEV, lr=3e-3, out_dir=out, **OPTS
    )


def _same(a: dict, b: dict):
    drop = {"train_seconds"}
    assert {k: v for k, v in a.items() if k not in drop} == {
        k: v for k, v in b.items() if k not in drop
    }


def test_train_transformer_learns_and_is_deterministic(transformer_run, tmp_path):
    out, m = transformer_run
    assert m["model"] == "transformer" and m["steps"] == 4 * (96 // 16)
    assert m["label_names"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert set(m["dev"]["per_type"]) <= {"PER", "LOC"} and m["test_f1"] == m["dev_f1"]
    assert m["dev_f1"] > 0.5  # a task this easy is learned in 24 steps
    again = train_tagger(
        "transformer", TRAIN, DEV, test=DEV, lr=3e-3, out_dir=tmp_path, **OPTS
    )
    _same(m, again)
    a = load_tagger(out)[0].state_dict()
    b = load_tagger(tmp_path)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_lstm_is_deterministic():
    runs = [train_tagger("lstm", TRAIN, DEV, lr=1e-2, seed=3, **OPTS) for _ in range(2)]
    _same(*runs)
    assert runs[0]["model"] == "lstm" and runs[0]["test_f1"] is None
    other = train_tagger("lstm", TRAIN, DEV, lr=1e-2, seed=4, **OPTS)
    assert other["dev_token_accuracy"] != runs[0]["dev_token_accuracy"] or (
        other["dev"] != runs[0]["dev"]
    )


def test_train_tagger_refuses_bad_input(tmp_path):
    with pytest.raises(ArgumentError, match="kind must be one of"):
        train_tagger("bow", TRAIN, DEV)
    with pytest.raises(ArgumentError, match="init is for the transformer"):
        train_tagger("lstm", TRAIN, DEV, init=tmp_path)
    with pytest.raises(ArgumentError, match="epochs must be positive"):
        train_tagger("lstm", TRAIN, DEV, epochs=0)
    with pytest.raises(ArgumentError, match="must hold sentences"):
        train_tagger("lstm", [], DEV)
    odd = [Sentence(["Acme"], ["I-ORG"])]
    with pytest.raises(DataError, match="never seen in training"):
        train_tagger("lstm", TRAIN, odd)


def test_saved_folder_round_trip(transformer_run):
    from encoder_book.bert import BertForTokenClassification

    out, m = transformer_run
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "vocab.txt", "labels.json"} <= names
    assert {"metrics.json"} <= names and not any(n.startswith(".tmp") for n in names)
    model, tok = load_tagger(out)
    reloaded = BertForTokenClassification.from_pretrained(out)
    sents = [s.words for s in DEV]
    ours = predict_tags(model, tok, sents)
    assert predict_tags(reloaded, tok, sents) == ours
    assert entity_scores([s.tags for s in DEV], ours)["f1"] == pytest.approx(
        m["dev_f1"]
    )
    assert model.config.id2label[0] == "O"


def test_saved_lstm_round_trip(tmp_path):
    m = train_tagger("lstm", TRAIN[:32], DEV, out_dir=tmp_path, **{**OPTS, "epochs": 1})
    model, tok = load_tagger(tmp_path)
    assert isinstance(model, LSTMTagger) and not model.training
    ours = predict_tags(model, tok, DEV)
    assert entity_scores([s.tags for s in DEV], ours)["f1"] == pytest.approx(
        m["dev_f1"]
    )
    with pytest.raises(DataNotFound):
        load_tagger(tmp_path / "nothing")


def test_transformers_pipeline_reads_the_folder(transformer_run):
    transformers = pytest.importorskip("transformers")
    out, _ = transformer_run
    model, tok = load_tagger(out)
    hf = transformers.AutoModelForTokenClassification.from_pretrained(out).eval()
    ids = torch.tensor([tok.encode("Bob went to Rome .")])
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, model(ids).logits, atol=1e-5)
    ner = transformers.pipeline("token-classification", model=str(out), device="cpu")
    words = ["Bob", "went", "to", "Rome", "."]
    word_ids = align_labels(tok, words, None, {})["word_ids"]
    first = {  # position of each word's first piece -> the word
        i: words[w]
        for i, w in enumerate(word_ids)
        if w is not None and w != word_ids[i - 1]
    }
    found = {
        first[r["index"]]: r["entity"]
        for r in ner(" ".join(words))
        if r["index"] in first
    }
    ours = predict_tags(model, tok, [words])[0]
    expect = {w: t for w, t in zip(words, ours) if t != "O"}
    assert found == expect and expect  # the model finds entities, HF the same ones


def test_train_tagger_from_a_pretrained_folder(transformer_run, tmp_path):
    out, m = transformer_run
    with pytest.raises(ArgumentError, match="brings its own vocab.txt"):
        train_tagger("transformer", TRAIN, DEV, init=out, tokenizer=out)
    again = train_tagger(
        "transformer", TRAIN, DEV, init=out, out_dir=tmp_path, **{**OPTS, "epochs": 1}
    )
    assert again["init"] == str(out) and again["lr"] == 5e-5
    assert again["vocab_size"] == m["vocab_size"] and again["dev_f1"] > 0.5
    assert (tmp_path / "vocab.txt").read_text() == (out / "vocab.txt").read_text()


def test_predict_tags_edge_cases(tok):
    model = LSTMTagger(LSTMTaggerConfig(tok.vocab_size, 2, 8, 8, id2label={0: "O"}))
    assert predict_tags(model, tok, []) == []
    assert predict_tags(model, tok, [[]]) == [[]]
    model.config.id2label = None
    with pytest.raises(ValueError, match="no id2label"):
        predict_tags(model, tok, [["x"]])


def test_real_conll_counts():
    "The files of shared/data, where they are: the counts of the task paper."
    try:
        paths = {s: conll_file(s) for s in ("train", "dev", "test")}
    except DataNotFound:
        pytest.skip("CoNLL-2003 is not in the data folder")
    data = {s: read_conll(p) for s, p in paths.items()}
    assert {s: len(v) for s, v in data.items()} == {
        "train": 14041,
        "dev": 3250,
        "test": 3453,
    }
    assert sum(len(s) for s in data["test"]) == 46435
    n = sum(len(spans(s.tags)) for s in data["test"])
    assert n == 1668 + 702 + 1661 + 1617
