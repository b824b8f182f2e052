"encoder_book.qa: SQuAD reading and its errors, the official scores, windows, span decoding, train/save/load."
import json

import numpy as np
import pytest

from encoder_book.data import DataError
from encoder_book.qa import (
    QAExample,
    best_spans,
    exact_match,
    f1_score,
    normalize_answer,
    predict_answers,
    prepare_features,
    read_squad,
    sentence_baseline,
    split_by_article,
    squad_scores,
    train_qa,
)
from encoder_book.tokenizer import WordPieceTokenizer

PEOPLE = [("Ada", "London", "1815"), ("Alan", "Wilmslow", "1912"), ("Emmy", "Erlangen", "1882"),
          ("Kurt", "Brno", "1906"), ("John", "Budapest", "1903")]


def squad_file(path, n=10):
    data = []
    for k in range(n):
        who, where, when = PEOPLE[k % len(PEOPLE)]
        ctx = f"{who} was born in {where} in {when}. {who} worked on mathematics."
        qas = [{"id": f"{k}-{q}", "question": question,
                "answers": [{"text": ans, "answer_start": ctx.index(ans)}]}
               for q, (question, ans) in enumerate([(f"Where was {who} born?", where),
                                                    (f"When was {who} born?", when)])]
        data.append({"title": f"article {k}", "paragraphs": [{"context": ctx, "qas": qas}]})
    path.write_text(json.dumps({"version": "1.1", "data": data}))
    return path


@pytest.fixture
def examples(tmp_path):
    return read_squad(squad_file(tmp_path / "s.json"))


@pytest.fixture
def tok(examples):
    return WordPieceTokenizer.train([e.context for e in examples] + [e.question for e in examples],
                                    vocab_size=200, progress=False)


def test_read_and_split(examples):
    assert len(examples) == 20 and examples[0].answers == ["London"] and examples[0].answer_starts == [16]
    train, held = split_by_article(examples)
    assert len(held) == 4 and not {e.title for e in train} & {e.title for e in held}
    assert split_by_article(examples, every=2)[1][0].title == "article 1"


@pytest.mark.parametrize("change, message", [
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].update(answer_start=3),
     "question 0-0: answer 'London' is not at offset 3"),
    (lambda d: d["data"][0]["paragraphs"][0].pop("context"), "article 0 (article 0), paragraph 0: no context"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][1].pop("question"), "question 0-1"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].pop("text"), "without text"),
    (lambda d: d.pop("data"), "not a SQuAD file"),
    (lambda d: d.update(data=[]), "no questions"),
])
def test_bad_files_are_one_line_naming_the_question(tmp_path, change, message):
    f = squad_file(tmp_path / "s.json")
    d = json.loads(f.read_text())
    change(d)
    f.write_text(json.dumps(d))
    with pytest.raises(DataError) as info:
        read_squad(f)
    assert message in str(info.value) and str(f) in str(info.value) and "\n" not in str(info.value)


def test_official_scores():
    assert normalize_answer("  The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("A an THE") == "" and normalize_answer("theatre") == "theatre"
    assert exact_match("Denver Broncos.", "the denver broncos") == 1.0
    assert f1_score("Broncos defense", "Denver Broncos") == 0.5
    assert f1_score("", "x") == 0.0 and f1_score("the", "a") == 0.0
    q = QAExample("q", "t", "", "", ["Denver Broncos", "the Broncos"], [0, 0])
    s = squad_scores({"q": "Broncos defense"}, [q])
    assert s["exact_match"] == 0 and abs(s["f1"] - 200 / 3) < 1e-9
    assert squad_scores({"q": "broncos"}, [q])["exact_match"] == 100.0
    assert squad_scores({}, [q]) == {"exact_match": 0.0, "f1": 0.0, "questions": 1}


def test_windows_cover_a_long_context_and_answers_map_back(tok):
    words = [f"w{k}" for k in range(300)]
    ctx = " ".join(words)
    at = ctx.index(" w250 ") + 1
    e = QAExample("long", "t", ctx, "which word?", ["w250"], [at])
    f = prepare_features(tok, [e], max_length=48, stride=16)
    assert len(f) > 2 and (f.start > 0).sum() >= 1 and set(f.example) == {0}
    assert f.lengths.max() <= 48
    for i in np.flatnonzero(f.start > 0):
        a = f.offsets[i]
        assert ctx[f.chars[a + f.start[i], 0] : f.chars[a + f.end[i], 1]] == "w250"
    seg = f.type_ids[f.offsets[0] : f.offsets[1]]
    assert seg[0] == 0 and seg[-1] == 1 and (f.chars[f.offsets[0] : f.offsets[1]][seg == 0] == -1).all()
    batch = f.collate(np.arange(len(f)))
    assert batch["input_ids"].shape[0] == len(f) and "start_positions" in batch
    with pytest.raises(DataError, match="leaves no room"):
        prepare_features(tok, [QAExample("q", "t", "x", " ".join(["why"] * 40), [], [])], 48, 16)


def test_best_spans_are_legal_and_cross_windows(examples, tok):
    f = prepare_features(tok, examples[:4], 64, 16)
    starts = [np.zeros(n) for n in f.lengths]
    ends = [np.zeros(n) for n in f.lengths]
    for i in range(len(f)):
        starts[i][f.start[i]] = ends[i][f.end[i]] = 5.0
    assert best_spans(starts, ends, f, examples[:4]) == {e.id: e.answers[0] for e in examples[:4]}
    # an end before the start is never chosen; neither is the question or [CLS]
    s, e = [np.zeros(n) for n in f.lengths], [np.zeros(n) for n in f.lengths]
    s[0][0] = e[0][0] = 100.0                                  # [CLS]
    k = int(f.lengths[0]) - 2                                   # the last context token
    s[0][k] = 50.0
    e[0][k - 1] = 60.0
    got = best_spans(s, e, f, examples[:4], max_answer_length=5)[examples[0].id]
    assert got and got in examples[0].context


def test_train_save_load_predict(tmp_path, examples, tok):
    from encoder_book.bert import BertForQuestionAnswering

    train, held = split_by_article(examples)
    m = train_qa(train, held, epochs=1, out_dir=tmp_path / "m", progress=False, vocab_size=200)
    assert 0 <= m["dev_f1"] <= 100 and m["dev_questions"] == len(held)
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.safetensors", "vocab.txt", "metrics.json", "answers.json"} <= files
    model = BertForQuestionAnswering.from_pretrained(tmp_path / "m")
    t = WordPieceTokenizer.from_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "answers.json").read_text())
    assert predict_answers(model, t, held, 256, 64) == saved
    again = train_qa(train, held, epochs=1, progress=False, vocab_size=200)
    assert again["dev_f1"] == m["dev_f1"]                       # same seed, same run
    with pytest.raises(ValueError, match="epochs must be positive"):
        train_qa(train, held, epochs=0)


def test_sentence_baseline(examples):
    got = sentence_baseline(examples[:2])
    assert got[examples[0].id] == "Ada was born in London in 1815."
    s = squad_scores(got, examples[:2])
    assert s["exact_match"] == 0 and 0 < s["f1"] < 100
