"Parity of WordPieceTokenizer's HF-style API with transformers' BertTokenizerFast."
import json
import random

import pytest

from encoder_book.tokenizer import WordPieceTokenizer

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

WORDS = ("the film is good a bad plot not really wonderful acting café naïve Crème brûlée "
         "我喜欢 电影 don't can't it's unbelievably").split()


def random_text(rng: random.Random) -> str:
    "Words, accents, CJK, control characters, emoji and very long words, mixed."
    parts = []
    for _ in range(rng.randrange(12)):
        kind = rng.random()
        if kind < 0.6:
            parts.append(rng.choice(WORDS))
        elif kind < 0.7:
            parts.append("".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(3)))
        elif kind < 0.8:
            parts.append(chr(rng.choice([0, 1, 0x7F, 0x200B, 0xFEFF, 0x1F600, 0x1F44D, 0xE9])))
        elif kind < 0.9:
            parts.append("x" * rng.randrange(95, 105))
        else:
            parts.append(rng.choice([",", ".", "!", "?", "'", "-", "(", ")"]))
    return rng.choice([" ", "  ", "\t"]).join(parts)


@pytest.fixture(scope="module")
def pair():
    "Our tokenizer and HF's, both loaded from the same saved folder."
    rng = random.Random(0)
    corpus = [random_text(rng) for _ in range(400)]
    tok = WordPieceTokenizer.train(corpus, vocab_size=250, progress=False)
    return tok, corpus


def load_both(tmp_path, tok, **hf_kwargs):
    d = tok.save_pretrained(tmp_path / "tok")
    hf = transformers.BertTokenizerFast.from_pretrained(str(d), **hf_kwargs)
    return WordPieceTokenizer.from_pretrained(d, **hf_kwargs), hf


def run(t, *args, **kwargs):
    "A call's result as plain lists (plus word and sequence ids), or its error."
    try:
        enc = t(*args, **kwargs)
    except BaseException as e:  # HF's Rust library panics on a few inputs
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return "error"
    out = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in enc.items()}
    out = {k: [list(map(tuple, r)) if r and isinstance(r[0], (list, tuple)) else r
                for r in v] if k == "offset_mapping" and v and isinstance(v[0], list)
           else v for k, v in out.items()}
    rows = len(out["input_ids"]) if out["input_ids"] and isinstance(out["input_ids"][0], list) else 1
    ids = [(enc.word_ids(i), enc.sequence_ids(i)) for i in range(rows)]
    return out, ids


def test_files_written(tmp_path, pair):
    d = pair[0].save_pretrained(tmp_path / "t")
    names = {p.name for p in d.iterdir()}
    assert {"vocab.txt", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json"} <= names
    assert json.loads((d / "special_tokens_map.json").read_text())["cls_token"] == "[CLS]"


@pytest.mark.parametrize("opts", [
    {}, {"do_lower_case": False}, {"strip_accents": True}, {"strip_accents": False},
    {"do_lower_case": False, "strip_accents": True}, {"tokenize_chinese_chars": False}])
def test_encode_random_strings(tmp_path, pair, opts):
    tok, _ = pair
    rng = random.Random(1)
    ours, hf = load_both(tmp_path, WordPieceTokenizer(tok.ids_to_tokens, **opts))
    for _ in range(300):
        t = random_text(rng)
        assert ours.encode(t) == hf(t)["input_ids"], repr(t)
        assert ours.tokenize(t) == hf.tokenize(t), repr(t)


def test_options_round_trip_through_hf(tmp_path, pair):
    "HF saves tokenize_chinese_chars=False (and the rest); we read it back, both files."
    tok, corpus = pair
    d = tok.save_pretrained(tmp_path / "a")
    hf = transformers.BertTokenizerFast.from_pretrained(
        str(d), tokenize_chinese_chars=False, do_lower_case=False, strip_accents=True)
    hf.save_pretrained(str(tmp_path / "b"))
    ours = WordPieceTokenizer.from_pretrained(tmp_path / "b")
    assert (ours.lowercase, ours.strip_accents, ours.tokenize_chinese_chars) == (
        False, True, False)
    for t in corpus[:100] + ["我喜欢电影 Crème"]:
        assert ours.encode(t) == hf(t)["input_ids"], repr(t)


TRUNCATIONS = [True, False, "longest_first", "only_first", "only_second", "do_not_truncate"]


@pytest.mark.parametrize("truncation", TRUNCATIONS)
@pytest.mark.parametrize("side", ["right", "left"])
def test_truncation_overflow_stride(tmp_path, pair, truncation, side):
    tok, corpus = pair
    ours, hf = load_both(tmp_path, tok)
    ours.truncation_side = hf.truncation_side = side
    rng = random.Random(2)
    checked = 0
    for _ in range(6):
        a = rng.choice(corpus)
        b = rng.choice(corpus + [None])
        for max_length in [3, 4, 6, 9, None]:
            for stride in [0, 1, 2]:
                for overflow in [False, True]:
                    for add in [True, False]:
                        specials = (2 if b is None else 3) if add else 0
                        if stride and max_length and max_length - specials <= stride + 1:
                            continue  # HF's Rust library panics here; we raise ValueError
                        kw = dict(truncation=truncation, max_length=max_length, stride=stride,
                                  return_overflowing_tokens=overflow, add_special_tokens=add,
                                  padding=False, return_tensors=None,
                                  return_special_tokens_mask=True,
                                  return_offsets_mapping=True)
                        h, o = run(hf, a, b, **kw), run(ours, a, b, **kw)
                        assert o == h, (a, b, kw)
                        checked += 1
    assert checked > 200


@pytest.mark.parametrize("padding", [True, False, "longest", "max_length", "do_not_pad"])
@pytest.mark.parametrize("multiple", [None, 8, 5])
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding(tmp_path, pair, padding, multiple, side):
    tok, corpus = pair
    ours, hf = load_both(tmp_path, tok)
    batch, pairs = corpus[:6], corpus[6:12]
    for tensors in [None] if padding in (False, "do_not_pad") else [None, "pt", "np"]:
        kw = dict(padding=padding, max_length=20, truncation=True, pad_to_multiple_of=multiple,
                  padding_side=side, return_tensors=tensors, return_special_tokens_mask=True)
        assert run(ours, batch, pairs, **kw) == run(hf, batch, pairs, **kw), kw


def test_offsets_and_word_ids_random(tmp_path, pair):
    tok, _ = pair
    rng = random.Random(3)
    ours, hf = load_both(tmp_path, tok)
    texts = [random_text(rng) for _ in range(200)] + ["the [MASK] films.", "Crème\u0301 x"]
    kw = dict(return_offsets_mapping=True, padding=True, return_tensors=None)
    assert run(ours, texts, **kw) == run(hf, texts, **kw)


def test_split_into_words(tmp_path, pair):
    tok, _ = pair
    ours, hf = load_both(tmp_path, tok)
    words = [["The", "film's", "plot"], ["café", "naïve!", "我喜欢"]]
    kw = dict(is_split_into_words=True, return_offsets_mapping=True, padding=True,
              return_tensors=None)
    assert run(ours, words, **kw) == run(hf, words, **kw)
    assert run(ours, words[0], words[1], **kw) == run(hf, words[0], words[1], **kw)


def test_special_tokens_and_vocab(tmp_path, pair):
    tok, _ = pair
    ours, hf = load_both(tmp_path, tok)
    assert ours.special_tokens_map == hf.special_tokens_map
    assert ours.all_special_tokens == hf.all_special_tokens
    assert ours.all_special_ids == hf.all_special_ids
    assert ours.get_vocab() == hf.get_vocab() and len(ours) == len(hf)
    for name in ["unk", "sep", "pad", "cls", "mask"]:
        assert getattr(ours, f"{name}_token") == getattr(hf, f"{name}_token")
        assert getattr(ours, f"{name}_token_id") == getattr(hf, f"{name}_token_id")
    assert ours.num_special_tokens_to_add() == hf.num_special_tokens_to_add() == 2
    assert ours.num_special_tokens_to_add(True) == hf.num_special_tokens_to_add(True) == 3
    assert ours.model_max_length == 512 == hf.model_max_length
    one, some = tok.ids_to_tokens[40], tok.ids_to_tokens[40:45] + ["not-a-token"]
    assert ours.convert_tokens_to_ids(one) == hf.convert_tokens_to_ids(one) == 40
    assert ours.convert_tokens_to_ids(some) == hf.convert_tokens_to_ids(some)
    assert ours.convert_ids_to_tokens(40) == hf.convert_ids_to_tokens(40) == one
    assert ours.convert_ids_to_tokens([40, 41]) == hf.convert_ids_to_tokens([40, 41])
    with pytest.raises(TypeError):
        ours.convert_tokens_to_ids(5)


def test_decoding(tmp_path, pair):
    tok, corpus = pair
    ours, hf = load_both(tmp_path, tok)
    rows = hf(corpus[:30] + ["he ' s here , isn ' t it ? do not go ."])["input_ids"]
    for skip in [False, True]:
        for clean in [None, False, True]:
            assert ours.batch_decode(rows, skip, clean) == hf.batch_decode(
                rows, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
    for r in rows[:10]:
        toks = hf.convert_ids_to_tokens(r)
        assert ours.convert_tokens_to_string(toks) == hf.convert_tokens_to_string(toks)
        assert ours.decode(r) == hf.decode(r)


def test_pad(tmp_path, pair):
    tok, corpus = pair
    ours, hf = load_both(tmp_path, tok)
    encs_o = [ours(t, return_tensors=None) for t in corpus[:5]]
    encs_h = [hf(t) for t in corpus[:5]]
    for kw in [{}, {"padding": "max_length", "max_length": 40}, {"pad_to_multiple_of": 8},
               {"padding_side": "left"}, {"return_tensors": "pt"}]:
        o, h = ours.pad(encs_o, **kw), hf.pad(encs_h, **kw)
        assert {k: v.tolist() if hasattr(v, "tolist") else v for k, v in o.items()} == {
            k: v.tolist() if hasattr(v, "tolist") else v for k, v in h.items()}, kw
    plain = [{"input_ids": e["input_ids"]} for e in encs_o]
    assert dict(ours.pad(plain)) == dict(hf.pad(plain))


def test_added_tokens(tmp_path, pair):
    tok, _ = pair
    ours, hf = load_both(tmp_path, tok)
    assert ours.add_tokens(["newword"]) == 1
    hf.add_tokens(["newword"])
    assert ours.add_special_tokens({"additional_special_tokens": ["[X]"]}) == 1
    hf.add_special_tokens({"additional_special_tokens": ["[X]"]})
    assert len(ours) == len(hf) and ours.get_vocab() == hf.get_vocab()
    assert ours.all_special_tokens == hf.all_special_tokens
    for t in ["the newword film", "a[X]b newword.", "[X] [MASK] the"]:
        kw = dict(return_offsets_mapping=True, return_special_tokens_mask=True,
                  return_tensors=None)
        assert run(ours, t, **kw) == run(hf, t, **kw), t
        ids = hf(t)["input_ids"]
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(
            ids, skip_special_tokens=True)
    ours.save_pretrained(tmp_path / "added")
    hf2 = transformers.BertTokenizerFast.from_pretrained(str(tmp_path / "added"))
    again = WordPieceTokenizer.from_pretrained(tmp_path / "added")
    for t in ["the newword film", "a[X]b newword."]:
        assert again.encode(t) == hf2(t)["input_ids"] == ours.encode(t)


def test_custom_special_tokens_and_missing_pad(tmp_path):
    vocab = ["<unk>", "<s>", "</s>", "the", "film", "##s"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"unk_token": "<unk>", "cls_token": "<s>", "sep_token": "</s>"}))
    ours = WordPieceTokenizer.from_pretrained(tmp_path)
    hf = transformers.BertTokenizerFast.from_pretrained(str(tmp_path))
    assert ours.encode("the films", "film") == hf("the films", "film")["input_ids"]
    assert (ours.pad_token_id, ours.mask_token_id) == (hf.pad_token_id, hf.mask_token_id)
    assert ours.get_vocab() == hf.get_vocab()


def test_slow_only_options(tmp_path, pair):
    "never_split and do_basic_tokenize exist in HF's Python BertTokenizer only."
    tok, _ = pair
    try:  # transformers 5.x
        from transformers.models.bert.tokenization_bert_legacy import (
            BertTokenizerLegacy as Slow,
        )
    except ImportError:  # 4.x
        Slow = transformers.BertTokenizer
    d = tok.save_pretrained(tmp_path / "slow")
    texts = ["The FILM is good, naïve!", "not really.wonderful", "A Bad-Plot x"]
    for kw in [{"never_split": ["FILM", "Bad-Plot"], "do_lower_case": False}, {"never_split": ["film"]}, {"do_basic_tokenize": False}]:
        slow = Slow(str(d / "vocab.txt"), **kw)
        ours = WordPieceTokenizer(tok.ids_to_tokens, **kw)
        for t in texts:
            assert ours.encode(t) == slow(t)["input_ids"], (kw, t)
        ours.save_pretrained(tmp_path / "s2")
        assert WordPieceTokenizer.from_pretrained(tmp_path / "s2").encode(texts[0]) == \
            ours.encode(texts[0])
        assert not (tmp_path / "s2" / "tokenizer.json").exists()
        with pytest.raises(ValueError, match="return_offsets_mapping"):
            ours(texts[0], return_offsets_mapping=True)


@pytest.mark.parametrize("kwargs, match", [
    ({"truncation": "bogus"}, "TruncationStrategy"),
    ({"padding": "bogus"}, "PaddingStrategy"),
    ({"padding_side": "middle", "padding": True}, "padding_side"),
    ({"truncation": "only_second", "max_length": 3}, "Second sequence"),
    ({"return_tensors": "tf"}, "return_tensors"),
])
def test_bad_options(pair, kwargs, match):
    tok, _ = pair
    with pytest.raises(ValueError, match=match):
        tok(["the film is good", "a"], **kwargs)


def test_only_first_too_short_errors_like_hf(tmp_path, pair):
    tok, _ = pair
    ours, hf = load_both(tmp_path, tok)
    args = ("a", "the film is good and the plot is really wonderful")
    kw = dict(truncation="only_first", max_length=6, padding=False, return_tensors=None)
    assert run(hf, *args, **kw) == "error"
    with pytest.raises(ValueError, match="too short"):
        ours(*args, **kw)


@pytest.mark.parametrize("edit, match", [
    (lambda s: s["model"].update(type="BPE"), "BPE"),
    (lambda s: s.update(normalizer={"type": "NFKC"}), "NFKC"),
    (lambda s: s.update(pre_tokenizer={"type": "Whitespace"}), "Whitespace"),
    (lambda s: s.update(truncation={"max_length": 8}), "truncation"),
    (lambda s: s["model"].update(continuing_subword_prefix="@@"), "continuing_subword_prefix"),
])
def test_unsupported_tokenizer_json(tmp_path, pair, edit, match):
    d = pair[0].save_pretrained(tmp_path / "x")
    spec = json.loads((d / "tokenizer.json").read_text())
    edit(spec)
    (d / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=match):
        WordPieceTokenizer.from_pretrained(d)


def test_unsupported_config(tmp_path, pair):
    d = pair[0].save_pretrained(tmp_path / "y")
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    for key, value in [("tokenizer_class", "GPT2Tokenizer"), ("split_special_tokens", True)]:
        (d / "tokenizer_config.json").write_text(json.dumps({**cfg, key: value}))
        with pytest.raises(ValueError, match=key if key != "tokenizer_class" else "GPT2"):
            WordPieceTokenizer.from_pretrained(d)
