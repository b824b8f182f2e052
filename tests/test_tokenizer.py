"WordPieceTokenizer: exact parity with HF's Rust tokenizer, batches, save/load, training, errors."
import random

import numpy as np
import pytest
import torch

from encoder_book.core import data_dir
from encoder_book.data import load_sst2, load_wikitext2
from encoder_book.tokenizer import (
    SPECIAL_TOKENS,
    WordPieceTokenizer,
    basic_tokenize,
    normalize,
    train_wordpiece,
)

HARD = ["", " ", "\t\n\r", "Crème Brûlée", "ΟΔΟΣ", "İstanbul", "ﬁne", "你好，世界！", "日本語", "한국어", "😀👍🏽👩‍👩‍👧",
        "\x00a\x01b\x7fc\u200bd\ufeffe\ufffd", "a" * 100, "a" * 101, "e\u0301", "[MASK] x [mask] [UNK]y [SEP]",
        "don't", "x\u2028y\u00a0z\u3000w", "𝐛𝐨𝐥𝐝", "١٢٣", "नमस्ते", "\U00011938", "ｆｕｌｌ", "\U0002B820 \U0002B920"]


def random_strings(n, seed=0):
    rng = random.Random(seed)
    def pick():
        return rng.choice([rng.randrange(0x20, 0x7F), rng.randrange(0xA0, 0x3000), rng.randrange(0x4E00, 0xA000),
                           rng.randrange(0x1F300, 0x1FB00), rng.randrange(0xE000, 0x110000)])
    return ["".join(chr(pick()) for _ in range(rng.randrange(30))) for _ in range(n)]


@pytest.mark.parametrize("lowercase", [True, False])
def test_parity_hard_and_random(tok, vocab_dir, texts, lowercase):
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertTokenizerFast(str(vocab_dir / "vocab.txt"), do_lower_case=lowercase)
    ours = WordPieceTokenizer(tok.ids_to_tokens, lowercase=lowercase)
    for t in HARD + random_strings(1500) + texts[:300]:
        assert ours.encode(t) == hf(t)["input_ids"], repr(t)


def test_parity_code_points(tok, hf_tok):
    chars = [chr(c) for c in range(0, 0x110000, 13) if not 0xD800 <= c <= 0xDFFF]
    texts = [f"a{c}b {c}" for c in chars]
    theirs = hf_tok(texts)["input_ids"]
    assert [t for t, h in zip(texts, theirs) if tok.encode(t) != h] == []


@pytest.mark.skipif(data_dir() is None, reason="no local copy of the shared data")
def test_parity_real_text():
    transformers = pytest.importorskip("transformers")
    sst = load_sst2("train")[0][:5000]
    tok = WordPieceTokenizer.train(sst, vocab_size=2000, progress=False)
    hf = transformers.BertTokenizerFast.from_pretrained(str(tok.save_pretrained(__import__("tempfile").mkdtemp())))
    for t in load_sst2("dev")[0] + load_wikitext2("valid")[:500]:
        assert tok.encode(t) == hf(t)["input_ids"]


def test_batches_match_hf(tok, hf_tok, texts):
    rng = random.Random(0)
    for _ in range(100):
        a, b = rng.sample(texts, 3), rng.sample(texts, 3)
        kw = dict(max_length=rng.choice([5, 6, 9, 17, 40]), padding=rng.choice([True, "max_length"]))
        for pair in (None, b):
            o = tok(a, pair, truncation=True, return_tensors="pt", **kw)
            h = hf_tok(a, pair, truncation=True, return_tensors="pt", **kw)
            for k in ("input_ids", "token_type_ids", "attention_mask"):
                assert torch.equal(o[k], h[k]), (k, kw)


def test_decode_matches_hf(tok, hf_tok, texts):
    for t in texts[:200] + HARD:
        ids = hf_tok(t)["input_ids"]
        for skip in (True, False):
            assert tok.decode(ids, skip_special_tokens=skip) == hf_tok.decode(ids, skip_special_tokens=skip)


def test_single_text_and_return_types(tok):
    single = tok("the film is good", return_tensors=None)
    assert single["input_ids"] == tok.encode("the film is good")
    assert single.attention_mask == [1] * len(single["input_ids"])
    assert tok("the film is good") == single  # HF's default: lists
    pt = tok("the film is good", return_tensors="pt")
    assert pt.input_ids.shape == (1, len(single["input_ids"])) and pt.input_ids.dtype == torch.long
    npy = tok(["a", "a b c"], padding=True, return_tensors="np")
    assert isinstance(npy["input_ids"], np.ndarray) and npy["input_ids"].shape[0] == 2
    ragged = tok(["a", "a b c"], padding=False, return_tensors=None)
    assert len(ragged["input_ids"][0]) < len(ragged["input_ids"][1])
    with pytest.raises(ValueError, match="padding"):
        tok(["a", "a b c"], padding=False, return_tensors="pt")
    with pytest.raises(ValueError, match="return_tensors"):
        tok("a", return_tensors="tf")
    with pytest.raises(ValueError, match="pairs"):
        tok(["a", "b"], ["c"])
    enc = tok(["x"] * 3, max_length=7, padding="max_length", return_tensors="pt")
    assert enc.input_ids.shape == (3, 7)


def test_pair_and_special_tokens(tok):
    ids = tok.encode("good film", "bad plot")
    assert ids.count(tok.sep_token_id) == 2 and ids[0] == tok.cls_token_id
    enc = tok("good film", "bad plot", return_tensors=None)
    first_sep = enc["input_ids"].index(tok.sep_token_id)
    assert set(enc["token_type_ids"][:first_sep + 1]) == {0} and set(enc["token_type_ids"][first_sep + 1:]) == {1}
    assert tok.tokenize("the [MASK] is good") [1] == "[MASK]"
    assert "[MASK]" not in tok.tokenize("the [mask] is good")


def test_long_words_and_unknowns(tok):
    assert tok.tokenize("a" * 101) == ["[UNK]"]
    assert tok.tokenize("a" * 100) != ["[UNK]"]
    assert tok.tokenize("☃") == ["[UNK]"]            # a character the vocabulary never saw


def test_save_load_roundtrip(tok, tmp_path):
    d = tok.save_pretrained(tmp_path / "t")
    assert (d / "vocab.txt").read_text(encoding="utf-8").splitlines() == tok.ids_to_tokens
    again = WordPieceTokenizer.from_pretrained(d)
    assert again.ids_to_tokens == tok.ids_to_tokens
    again_file = WordPieceTokenizer.from_pretrained(d / "vocab.txt")
    assert again_file.encode("Héllo Wörld") == tok.encode("Héllo Wörld")
    cased = WordPieceTokenizer(tok.ids_to_tokens, lowercase=False)
    cased.save_pretrained(tmp_path / "cased")
    assert WordPieceTokenizer.from_pretrained(tmp_path / "cased").lowercase is False


def test_hf_loads_ours_and_we_load_hf(tok, tmp_path):
    transformers = pytest.importorskip("transformers")
    d = tok.save_pretrained(tmp_path / "ours")
    auto = transformers.AutoTokenizer.from_pretrained(str(d))
    assert auto("The FILM, naïvely good!")["input_ids"] == tok.encode("The FILM, naïvely good!")
    hf = transformers.BertTokenizerFast(str(d / "vocab.txt"), do_lower_case=False)
    hf.save_pretrained(str(tmp_path / "theirs"))
    loaded = WordPieceTokenizer.from_pretrained(tmp_path / "theirs")
    assert loaded.lowercase is False and loaded.ids_to_tokens == tok.ids_to_tokens


@pytest.mark.parametrize("content, match", [
    ("", "empty"), ("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nx\nx\n", "duplicate")])
def test_bad_vocab_files(tmp_path, content, match):
    f = tmp_path / "vocab.txt"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        WordPieceTokenizer.from_pretrained(f)


def test_missing_and_binary_vocab(tmp_path):
    with pytest.raises(FileNotFoundError, match="no vocabulary"):
        WordPieceTokenizer.from_pretrained(tmp_path / "missing")
    (tmp_path / "vocab.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="UTF-8"):
        WordPieceTokenizer.from_pretrained(tmp_path)


def test_bad_input_types(tok):
    with pytest.raises(TypeError, match="str"):
        tok.encode(42)
    with pytest.raises(TypeError):
        tok.tokenize(None)
    with pytest.raises(TypeError):
        tok([b"bytes"])
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="out of range"):
        tok.convert_ids_to_tokens([-1])
    with pytest.raises(TypeError):
        WordPieceTokenizer.train("one string")
    with pytest.raises(TypeError):
        WordPieceTokenizer.train(["ok", 3], progress=False)
    with pytest.raises(ValueError, match="empty"):
        WordPieceTokenizer.train(["", "  "], progress=False)
    with pytest.raises(ValueError, match="score"):
        train_wordpiece({"ab": 1}, 20, score="magic")


def test_training_is_deterministic_and_greedy(texts):
    a = WordPieceTokenizer.train(texts, vocab_size=180, progress=False)
    b = WordPieceTokenizer.train(list(reversed(texts)), vocab_size=180, progress=False)
    assert a.ids_to_tokens == b.ids_to_tokens
    big = WordPieceTokenizer.train(texts, vocab_size=230, progress=False)
    assert big.ids_to_tokens[:180] == a.ids_to_tokens          # a prefix of a vocabulary is a vocabulary
    assert a.ids_to_tokens[:5] == list(SPECIAL_TOKENS)
    assert len(set(a.ids_to_tokens)) == 180


def test_training_stops_when_every_word_is_one_token(texts):
    tok = WordPieceTokenizer.train(texts, vocab_size=100_000, progress=False)
    words = {w for t in texts for w in basic_tokenize(t)}
    assert tok.vocab_size < 100_000
    assert all(tok.tokenize(w) == [w] for w in words)


def test_small_vocab_keeps_most_frequent_characters():
    v = train_wordpiece({"aaab": 3, "c": 1}, 7)     # symbols: ##a x6, a x3, ##b x3, c x1
    assert v == list(SPECIAL_TOKENS) + ["##a", "##b"]


@pytest.mark.parametrize("rule", ["likelihood", "ratio", "frequency"])
def test_every_score_rule_covers_the_corpus(texts, rule):
    from collections import Counter
    counts = Counter(w for t in texts for w in basic_tokenize(t))
    tok = WordPieceTokenizer(train_wordpiece(counts, 200, score=rule))
    for t in texts[:100]:
        assert tok.unk_token_id not in tok.encode(t)


def test_normalize_steps():
    assert normalize("Ça\tVa\u00a0BIEN\u200b") == "ca va bien"
    assert normalize("Ça", lowercase=False) == "Ça"
    assert normalize("Ça", lowercase=True, strip_accents=False) == "ça"
    assert basic_tokenize("你好!") == ["你", "好", "!"]
