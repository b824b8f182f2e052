"encoder_book.data: loaders (good and bad files), label mapping, sources and atomic writes, tokenization, batches."
import io
import json
import sys
import types
import urllib.error
import zipfile

import numpy as np
import pytest
import torch

import encoder_book.core as core
import encoder_book.data as data
from encoder_book.data import (
    DataError,
    DataNotFound,
    LabelledData,
    TokenizedData,
    atomic_path,
    atomic_write,
    dataloader,
    iter_batches,
    load_corpus,
    load_label_names,
    load_labelled,
    locate,
    make_batches,
    pack_corpus,
    pad_collate,
    padding_stats,
    tokenize_dataset,
)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    "An empty local data folder, an empty cache, no network, and no HF `datasets`."
    monkeypatch.setenv("ENCODER_BOOK_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("ENCODER_BOOK_CACHE", str(tmp_path / "cache"))
    def offline(*a, **k): raise urllib.error.URLError("no network in tests")
    monkeypatch.setattr(core.urllib.request, "urlopen", offline)
    monkeypatch.setitem(sys.modules, "datasets", None)          # import datasets -> ImportError
    return tmp_path


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def files_under(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) if path.exists() else []


# ---------------------------------------------------------------- labelled files

def test_tsv_with_int_labels_and_quotes(tmp_path):
    f = write(tmp_path / "a.tsv", 'sentence\tlabel\nit\'s "great" \t1\nbad\t0\n\n')
    d = load_labelled(f)
    assert d.texts == ['it\'s "great" ', "bad"] and d.labels == [1, 0] and d.label_names is None
    assert d.num_labels == 2 and len(d) == 2 and d[0] == ('it\'s "great" ', 1)


def test_csv_string_labels_sorted_and_saved(tmp_path):
    f = write(tmp_path / "a.csv", 'text,label\n"a, b",pos\nc,neg\n"say ""hi""",neu\n')
    d = load_labelled(f)
    assert d.texts == ["a, b", "c", 'say "hi"']
    assert d.label_names == ["neg", "neu", "pos"] and d.labels == [2, 0, 1]
    d.save_labels(tmp_path / "labels.json")
    saved = json.loads((tmp_path / "labels.json").read_text())
    assert saved["id2label"] == {"0": "neg", "1": "neu", "2": "pos"} and saved["label2id"]["pos"] == 2
    assert load_label_names(tmp_path / "labels.json") == d.label_names
    # the dev file maps with the training names, even if it lacks a class
    dev = write(tmp_path / "dev.csv", "text,label\nx,pos\n")
    assert load_labelled(dev, label_names=d.label_names).labels == [2]


def test_jsonl_and_given_columns(tmp_path):
    f = write(tmp_path / "a.jsonl", '{"review": "fine", "stars": "good"}\n\n{"review": "tab\\tin", "stars": "bad"}\n')
    d = load_labelled(f, text_column="review", label_column="stars")
    assert d.texts == ["fine", "tab\tin"] and d.labels == [1, 0] and d.label_names == ["bad", "good"]
    g = write(tmp_path / "b.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": "0"}\n')
    assert load_labelled(g).labels == [1, 0]                       # integers, whether written as numbers or not


def test_usual_column_names_and_two_column_files(tmp_path):
    "Without names: the usual ones; in a file of two columns, one known name is enough."
    f = write(tmp_path / "a.csv", "review,stars\ngood,5\nbad,1\n")
    assert load_labelled(f).texts == ["good", "bad"] and load_labelled(f).labels == [1, 0]   # "1", "5"
    g = write(tmp_path / "b.jsonl", '{"label": "pos", "tweet": "hi"}\n{"label": "neg", "tweet": "no"}\n')
    assert load_labelled(g).texts == ["hi", "no"] and load_labelled(g).label_names == ["neg", "pos"]
    h = write(tmp_path / "c.tsv", "id\tcontent\tsentiment\n7\tfine\tpositive\n8\tdull\tnegative\n")
    assert load_labelled(h).texts == ["fine", "dull"] and load_labelled(h).labels == [1, 0]
    given = write(tmp_path / "d.csv", "text,label,topic\na,1,sport\nb,0,arts\n")
    assert load_labelled(given, label_column="topic").label_names == ["arts", "sport"]   # a name given wins


def test_named_sets_quick_and_sst2_local_copy(tmp_path):
    tiny = load_labelled("tiny")
    assert isinstance(tiny, LabelledData) and len(tiny) == 2000 and set(tiny.labels) == {0, 1}
    assert load_labelled("tiny", "dev").texts != tiny.texts[:500]
    write(tmp_path / "data" / "sst2" / "dev.tsv", "sentence\tlabel\ngood \t1\nbad\t0\n")
    assert load_labelled("sst2", "dev").texts == ["good ", "bad"]
    with pytest.raises(ValueError, match="test split"):
        load_labelled("sst2", "test")


BAD = {
    "columns.tsv": ("words\tlabel\tsource\ngood\t1\tx\n", 1, "no text column"),
    "nolabel.csv": ("text,score,source\ngood,1,x\n", 1, "no label column 'label'"),
    "glue_test.tsv": ("index\tsentence\n0\tgood\n", 1, "no label column"),
    "twonames.csv": ("words,score\ngood,1\n", 1, "no text column"),
    "empty.csv": ("", None, "empty"),
    "blank.tsv": ("\n  \n", None, "empty"),
    "header.csv": ("text,label\n", None, "no examples"),
    "ragged.tsv": ("sentence\tlabel\nok\t1\nhas\ta tab\t0\n", 3, "expected 2 fields"),
    "short.csv": ("text,label\nok,1\nmissing\n", 3, "expected 2 fields"),
    "emptylabel.csv": ("text,label\nok,\n", 2, "empty label"),
    "mixed.csv": ("text,label\nok,1\nno,pos\n", 3, "mixes strings"),
    "json.jsonl": ('{"text": "a", "label": 1}\n{"text": "b", "label": 1\n', 2, "not valid JSON"),
    "notobject.jsonl": ('{"text": "a", "label": 1}\n[1, 2]\n', 2, "JSON object"),
    "field.jsonl": ('{"text": "a", "label": 1}\n{"sentence": "b", "label": 0}\n', 2, "no 'text' field"),
    "labeltype.jsonl": ('{"text": "a", "label": 1.5}\n', 1, "neither an integer nor a string"),
    "format.txt": ("text,label\na,1\n", None, "unknown format"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_files_one_clear_error(tmp_path, name):
    content, line, problem = BAD[name]
    f = write(tmp_path / name, content)
    with pytest.raises(DataError) as info:
        load_labelled(f)
    msg = str(info.value)
    assert problem in msg and name in msg and "\n" not in msg
    assert info.value.line == line
    assert isinstance(info.value, ValueError)


def test_bad_encoding_names_the_line(tmp_path):
    f = write(tmp_path / "latin.tsv", "sentence\tlabel\nok\t1\ncafé\t0\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"latin\.tsv, line 3: not UTF-8"):
        load_labelled(f)
    bom = write(tmp_path / "bom.csv", "\ufefftext,label\na,1\n")           # a BOM is fine
    assert load_labelled(bom).texts == ["a"]


def test_unknown_label_and_missing_file(tmp_path):
    f = write(tmp_path / "a.csv", "text,label\na,pos\nb,maybe\n")
    with pytest.raises(DataError, match=r"line 3: label 'maybe' is not one of"):
        load_labelled(f, label_names=["neg", "pos"])
    with pytest.raises(DataNotFound, match="no such file"):
        load_labelled(tmp_path / "nope.tsv")
    assert issubclass(DataNotFound, FileNotFoundError)


# ---------------------------------------------------------------- corpora and sources

def test_corpus_files_folders_and_tiny(tmp_path):
    a = write(tmp_path / "c" / "a.txt", "first line\n\n  second  \n")
    write(tmp_path / "c" / "sub" / "b.txt", "third\n")
    assert load_corpus(a) == ["first line", "second"]
    assert load_corpus(tmp_path / "c") == ["first line", "second", "third"]
    assert load_corpus([a, a]) == ["first line", "second"] * 2
    assert len(load_corpus("tiny")) == 500 and load_corpus("tiny", "valid") != load_corpus("tiny")[:60]
    with pytest.raises(DataNotFound, match="known corpora"):
        load_corpus(tmp_path / "missing.txt")
    with pytest.raises(DataError, match="empty"):
        load_corpus(write(tmp_path / "empty.txt", "\n\n"))


def test_wikitext_both_variants_from_local_copy(tmp_path):
    write(tmp_path / "data" / "wikitext2" / "wiki.valid.tokens", " \n = Title = \n\n a <unk> b \n")
    write(tmp_path / "data" / "wikitext2-raw" / "wiki.valid.raw", " \n = Title = \n\n a rare b \n")
    assert load_corpus("wikitext-2", "valid") == ["= Title =", "a <unk> b"]
    assert load_corpus("wikitext-2-raw-v1", "valid") == ["= Title =", "a rare b"]
    with pytest.raises(ValueError, match="splits"):
        load_corpus("wikitext-2", "dev")


def test_offline_without_copy_is_one_clear_error(tmp_path):
    for name in ("wikitext-2", "wikitext-2-raw"):
        with pytest.raises(DataNotFound, match="ENCODER_BOOK_DATA") as info:
            load_corpus(name, "test")
        assert "\n" not in str(info.value)
    with pytest.raises(DataNotFound, match="download=False"):
        locate("sst2/train.tsv", download=False)
    assert all(not f.endswith(".part") for f in files_under(tmp_path / "cache"))


def _zip(member, content):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z: z.writestr(member, content)
    return buf.getvalue()


def test_raw_archive_checked_then_unpacked(tmp_path, monkeypatch):
    blob = _zip("wikitext-2-raw/wiki.test.raw", " = Raw = \n text \n")
    url = data.RAW_FILES["wikitext2-raw/wiki.test.raw"][0]
    monkeypatch.setattr(data, "_download", lambda u, dest: atomic_write(dest, blob))
    monkeypatch.setitem(data.ARCHIVE_SHA256, url, "0" * 64)               # wrong checksum first
    with pytest.raises(DataError, match="checksum mismatch"):
        load_corpus("wikitext-2-raw", "test")
    assert files_under(tmp_path / "cache") == []                            # nothing half-way, bad archive gone
    import hashlib
    monkeypatch.setitem(data.ARCHIVE_SHA256, url, hashlib.sha256(blob).hexdigest())
    assert load_corpus("wikitext-2-raw", "test") == ["= Raw =", "text"]
    assert "wikitext2-raw/wiki.test.raw" in files_under(tmp_path / "cache")


def test_hf_datasets_used_when_installed(tmp_path, monkeypatch):
    calls = []
    def load_dataset(repo, config, split):
        calls.append((repo, config, split))
        if config == "sst2":
            return [{"sentence": "nice ", "label": 1, "idx": 0}, {"sentence": "meh", "label": 0, "idx": 1}]
        return [{"text": ""}, {"text": " = T = \n"}, {"text": " words \n"}]
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert load_labelled("sst2", "dev").texts == ["nice ", "meh"]
    assert load_corpus("wikitext-2-raw", "valid") == ["= T =", "words"]
    assert calls == [("nyu-mll/glue", "sst2", "validation"), ("Salesforce/wikitext", "wikitext-2-raw-v1", "validation")]
    load_labelled("sst2", "dev")
    assert len(calls) == 2                                                 # the second time from the cache
    def broken(*a, **k): raise ConnectionError("offline")
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=broken))
    with pytest.raises(DataNotFound, match="ENCODER_BOOK_DATA") as info:   # falls back to the archive: offline
        load_corpus("wikitext-2", "test")
    assert "HF datasets failed too: ConnectionError: offline" in str(info.value)  # not swallowed
    assert "\n" not in str(info.value)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(UnicodeEncodeError):
        atomic_write(tmp_path / "out" / "x.txt", "\udcff")
    assert files_under(tmp_path / "out") == []
    atomic_write(tmp_path / "out" / "x.txt", "old")
    with pytest.raises(UnicodeEncodeError):
        atomic_write(tmp_path / "out" / "x.txt", "new \udcff")
    assert (tmp_path / "out" / "x.txt").read_text() == "old" and files_under(tmp_path / "out") == ["x.txt"]



def test_atomic_path_for_writers_that_want_a_file_name(tmp_path):
    from safetensors.torch import load_file, save_model
    target = tmp_path / "w" / "model.safetensors"
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a file")
            raise RuntimeError("disk full")
    assert files_under(tmp_path / "w") == []                      # nothing, not half a file
    lin = torch.nn.Linear(3, 2)
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target and not target.exists()
        save_model(lin, str(tmp))
    assert files_under(tmp_path / "w") == ["model.safetensors"]
    assert torch.equal(load_file(target)["weight"], lin.weight.detach())
    with pytest.raises(RuntimeError):                              # a failed rewrite keeps the old file
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"x"); raise RuntimeError
    assert torch.equal(load_file(target)["weight"], lin.weight.detach())

# ---------------------------------------------------------------- tokenization and batches

@pytest.fixture
def labelled():
    return load_labelled("tiny")


def test_tokenize_collate_matches_tokenizer(tok, labelled, tmp_path):
    d = tokenize_dataset(tok, labelled, max_length=16)
    assert isinstance(d, TokenizedData) and len(d) == len(labelled) and d.lengths.max() <= 16
    idx = np.array([3, 0, 17, 5])
    b = d.collate(idx)
    ref = tok([labelled.texts[i] for i in idx], max_length=16, padding=True, truncation=True,
              return_tensors="pt")
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(b[k], ref[k]), k
    assert b["labels"].tolist() == [labelled.labels[i] for i in idx]
    assert torch.equal(pad_collate([d[i] for i in idx], tok.pad_token_id)["input_ids"], b["input_ids"])
    # cached: a second call reads the file, and gives the same arrays
    assert len(files_under(tmp_path / "cache" / "tokenized")) == 1
    again = tokenize_dataset(tok, labelled, max_length=16)
    assert np.array_equal(again.ids, d.ids) and np.array_equal(again.offsets, d.offsets)
    other = tokenize_dataset(tok, labelled, max_length=12)
    assert other.lengths.max() <= 12 and len(files_under(tmp_path / "cache" / "tokenized")) == 2
    sub = d.subset([5, 1])
    assert torch.equal(sub.collate(np.arange(2))["input_ids"], d.collate(np.array([5, 1]))["input_ids"])


def test_pairs_keep_segments(tok):
    d = tokenize_dataset(tok, ["the film", "a plot"], labels=[0, 1], text_pairs=["is good", "was dull ..."],
                         max_length=32, cache=False)
    b = d.collate(np.arange(2))
    ref = tok(["the film", "a plot"], ["is good", "was dull ..."], max_length=32, padding=True,
              truncation=True, return_tensors="pt")
    assert torch.equal(b["token_type_ids"], ref["token_type_ids"]) and b["token_type_ids"].sum() > 0


def test_batches_partition_deterministic_and_bucketed():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 120, 1000)
    bs = make_batches(lengths, 32, seed=1, epoch=0)
    assert np.array_equal(np.sort(np.concatenate(bs)), np.arange(1000))
    assert all(np.array_equal(a, b) for a, b in zip(bs, make_batches(lengths, 32, seed=1, epoch=0)))
    assert not np.array_equal(np.concatenate(bs), np.concatenate(make_batches(lengths, 32, seed=1, epoch=1)))
    random_b = make_batches(lengths, 32, bucket=False, seed=1)
    assert padding_stats(lengths, bs)["padding"] < padding_stats(lengths, random_b)["padding"] / 3
    dropped = make_batches(lengths, 32, drop_last=True)
    assert all(len(b) == 32 for b in dropped) and len(dropped) == 1000 // 32
    ordered = np.concatenate(make_batches(lengths, 32, shuffle=False))
    assert np.all(np.diff(lengths[ordered]) >= 0)                          # eval: sorted, least padding


def test_dataloader_and_iter_batches_agree(tok, labelled):
    d = tokenize_dataset(tok, labelled.texts[:200], labels=labelled.labels[:200], max_length=32, cache=False)
    pairs = list(zip(dataloader(d, 16, seed=4), iter_batches(d, 16, seed=4)))
    assert len(pairs) == 13
    for x, y in pairs:
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_pack_corpus_blocks(tok):
    lines = load_corpus("tiny")[:50]
    blocks = pack_corpus(tok, lines, block_size=32, cache=False)
    whole = [i for line in lines for i in tok.encode(line)[1:-1]]
    assert (blocks.lengths == 32).all() and len(blocks) == len(whole) // 30
    ids = blocks.ids.reshape(-1, 32)
    assert (ids[:, 0] == tok.cls_token_id).all() and (ids[:, -1] == tok.sep_token_id).all()
    assert ids[:, 1:-1].reshape(-1).tolist() == whole[:len(blocks) * 30]
    with pytest.raises(ValueError, match="fewer than one block"):
        pack_corpus(tok, ["short"], block_size=64, cache=False)


def test_integer_labels_that_are_not_ids_are_mapped(tmp_path):
    f = write(tmp_path / "stars.csv", "text,label\na,5\nb,1\nc,3\nd,-1\n")
    d = load_labelled(f)
    assert d.label_names == ["-1", "1", "3", "5"] and d.labels == [3, 1, 2, 0]
    dev = write(tmp_path / "dev.csv", "text,label\nx,3\n")
    assert load_labelled(dev, label_names=d.label_names).labels == [2]
    ids = write(tmp_path / "ids.csv", "text,label\na,1\nb,0\n")
    assert load_labelled(ids).label_names is None and load_labelled(ids).labels == [1, 0]


def test_long_fields_encodings_and_atomic_permissions(tmp_path):
    import os

    from encoder_book.data import ArgumentError, atomic_write
    big = "x" * 200_000
    f = write(tmp_path / "big.tsv", f"sentence\tlabel\n{big}\t1\nok\t0\n")
    assert load_labelled(f).texts[0] == big
    c = write(tmp_path / "q.csv", f'text,label\n"{big}",1\n"a,\nb",0\n')
    assert load_labelled(c).texts == [big, "a,\nb"]
    latin = write(tmp_path / "l.csv", "text,label\ncafé,1\n", encoding="cp1252")
    assert load_labelled(latin, encoding="cp1252").texts == ["café"]
    with pytest.raises(ArgumentError, match="unknown encoding"):
        load_labelled(latin, encoding="klingon")
    old = os.umask(0o027)
    try:
        p = atomic_write(tmp_path / "perm.txt", "x")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o640


def test_prepare_out_and_publish(tmp_path):
    from encoder_book.data import (
        INCOMPLETE,
        ArgumentError,
        atomic_write,
        prepare_out,
        publish,
    )
    out = tmp_path / "o"
    run = prepare_out(out, "finetune")
    assert (out / INCOMPLETE).exists()
    with pytest.raises(ArgumentError, match="no unfinished pretrain run"):
        prepare_out(out, "pretrain", resume=True)
    assert prepare_out(out, "finetune", resume=True) == run
    staged = tmp_path / "s"
    atomic_write(staged / "config.json", "{}"); atomic_write(staged / "vocab.txt", "a\n")
    publish(staged, out)
    assert not (out / INCOMPLETE).exists() and not staged.exists()
    with pytest.raises(ArgumentError, match="holds a model"):
        prepare_out(out, "finetune")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ArgumentError, match="is a file"):
        prepare_out(tmp_path / "f", "finetune")


# ---------------------------------------------------------------- sentence pairs

MRPC_HEAD = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"


def test_pair_files_found_by_their_column_names(tmp_path):
    tsv = write(tmp_path / "p.tsv", "sentence1\tsentence2\tlabel\nA man .\tA person .\tentailment\n"
                                    'He said " no " .\tNo .\tnot_entailment\n')
    d = load_labelled(tsv)
    assert d.texts == ["A man .", 'He said " no " .'] and d.text_pairs == ["A person .", "No ."]
    assert d.label_names == ["entailment", "not_entailment"] and "2 pairs" in repr(d)
    mrpc = write(tmp_path / "m.txt", MRPC_HEAD + "1\t1\t2\tOne .\tUno .\n0\t3\t4\tTwo .\tTres .\n")
    m = load_labelled(mrpc)                               # MRPC's own test file: a BOM, .txt, "Quality"
    assert m.labels == [1, 0] and m.text_pairs == ["Uno .", "Tres ."] and m.label_names is None
    jl = write(tmp_path / "q.jsonl", json.dumps({"question": "Who?", "sentence": "Me.", "label": 1})
               + "\n" + json.dumps({"question": "Why?", "sentence": "So.", "label": 0}) + "\n")
    assert load_labelled(jl).text_pairs == ["Me.", "So."]
    csv_file = write(tmp_path / "c.csv", "text,other,label\na,b,0\nc,d,1\n")
    assert load_labelled(csv_file).text_pairs is None                     # one text column: singles
    given = load_labelled(csv_file, pair_column="other")
    assert given.texts == ["a", "c"] and given.text_pairs == ["b", "d"]
    sub = given.subset([1])
    assert (sub.texts, sub.text_pairs, sub.labels) == (["c"], ["d"], [1])
    single = load_labelled(tsv, text_column="sentence2")                  # asked for one text
    assert single.text_pairs is None and single.texts == ["A person .", "No ."]


def test_pair_file_errors_are_one_line(tmp_path):
    f = write(tmp_path / "c.csv", "text,label\na,0\n")
    with pytest.raises(DataError, match="no second text column 'other'"):
        load_labelled(f, pair_column="other")
    with pytest.raises(DataError, match="used twice"):
        load_labelled(f, pair_column="text", text_column="text")
    bad = write(tmp_path / "b.jsonl", json.dumps({"sentence1": "a", "sentence2": 3, "label": 0}) + "\n")
    with pytest.raises(DataError, match="'sentence2' must be a string"):
        load_labelled(bad)
    with pytest.raises(ValueError, match="2 texts but 1 second texts"):
        LabelledData(["a", "b"], [0, 1], None, ["c"])
    with pytest.raises(DataError, match="unknown format"):
        load_labelled(write(tmp_path / "plain.txt", "no tabs here\n"))


def test_glue_pair_sets_from_the_data_folder(tmp_path):
    write(tmp_path / "data" / "mrpc" / "dev.tsv", MRPC_HEAD + "1\t1\t2\tA .\tB .\n0\t3\t4\tC .\tD .\n")
    write(tmp_path / "data" / "rte" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n"
                                                   "0\tA .\tB .\tnot_entailment\n")
    d = load_labelled("mrpc", "validation")
    assert (d.texts, d.text_pairs, d.labels) == (["A .", "C ."], ["B .", "D ."], [1, 0])
    assert load_labelled("rte", "train").label_names == ["not_entailment"]
    with pytest.raises(ValueError, match="rte splits are 'train', 'dev'"):
        load_labelled("rte", "test")
    with pytest.raises(DataNotFound, match="mrpc/msr_paraphrase_test.txt"):   # offline, no copy
        load_labelled("mrpc", "test")


def test_tokenize_labelled_pairs_uses_segments(tok):
    d = LabelledData(["the film", "a plot"], [0, 1], None, ["is good", "was dull"])
    b = tokenize_dataset(tok, d, max_length=32, cache=False).collate(np.arange(2))
    ref = tok(d.texts, d.text_pairs, max_length=32, padding=True, truncation=True, return_tensors="pt")
    assert torch.equal(b["input_ids"], ref["input_ids"]) and torch.equal(b["token_type_ids"],
                                                                         ref["token_type_ids"])
    with pytest.raises(ValueError, match="second texts"):
        tokenize_dataset(tok, ["a", "b"], text_pairs=["c"], cache=False)


# ---- load_unlabelled: unlabelled texts (what predict reads) ----

def test_load_texts_lines_and_columns(tmp_path):
    (tmp_path / "a.txt").write_text("first one\n\n  \nsecond\n", encoding="utf-8")
    assert data.load_unlabelled(tmp_path / "a.txt") == (["first one", "second"], None)
    (tmp_path / "b.tsv").write_text("sentence1\tsentence2\tlabel\nx\ty\t1\nz\tw\t0\n")
    assert data.load_unlabelled(tmp_path / "b.tsv", pairs=True) == (["x", "z"], ["y", "w"])
    # one text wanted: the first known text column, the pair column ignored
    (tmp_path / "c.csv").write_text("id,text\n1,hello\n2,\"a, b\"\n")
    assert data.load_unlabelled(tmp_path / "c.csv") == (["hello", "a, b"], None)
    (tmp_path / "d.jsonl").write_text('{"question1": "q", "question2": "r"}\n')
    assert data.load_unlabelled(tmp_path / "d.jsonl", pairs=True) == (["q"], ["r"])
    # --text-column A finds its known partner; named columns win
    (tmp_path / "e.tsv").write_text("premise\thypothesis\tother\np\th\to\n")
    assert data.load_unlabelled(tmp_path / "e.tsv", "premise", pairs=True) == (["p"], ["h"])
    assert data.load_unlabelled(tmp_path / "e.tsv", "other", "premise", pairs=True) == (
        ["o"], ["p"])


def test_load_texts_pairs_from_lines_and_stdin(tmp_path, monkeypatch):
    (tmp_path / "p.txt").write_text("a\tb\nc\td\n", encoding="utf-8")
    assert data.load_unlabelled(tmp_path / "p.txt", pairs=True) == (["a", "c"], ["b", "d"])
    stdin = types.SimpleNamespace(buffer=io.BytesIO(b"one\ttwo\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert data.load_unlabelled("-", pairs=True) == (["one"], ["two"])


@pytest.mark.parametrize("name, content, pairs, line, words", [
    ("three.txt", "a\tb\nc\td\te\n", True, 2, "found 3 fields"),
    ("one.tsv", "sentence\tlabel\nx\t1\n", True, 1, "needs two text columns"),
    ("none.csv", "words,score\nx,1\n", False, 1, "no text column"),
    ("ragged.tsv", "text\tid\nx\t1\ny\n", False, 3, "expected 2 fields"),
    ("bad.jsonl", '{"text": "x"}\n{"text": \n', False, 2, "not valid JSON"),
])
def test_load_texts_refuses_with_file_and_line(tmp_path, name, content, pairs, line, words):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as e:
        data.load_unlabelled(tmp_path / name, pairs=pairs)
    assert e.value.line == line and words in e.value.problem and name in str(e.value)


def test_pad_rows_equals_a_loop():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 9, size=30)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = rng.integers(1, 100, size=int(offsets[-1])).astype(np.int32)
    idx = rng.permutation(30)[:11]
    got, mask = data.pad_rows(flat, offsets, idx, -7), data.pad_rows(None, offsets, idx, 0)
    width = int(lengths[idx].max())
    assert got.shape == mask.shape == (11, width) and got.dtype == torch.int64
    for row, i in enumerate(idx):
        n = int(lengths[i])
        assert got[row, :n].tolist() == flat[offsets[i] : offsets[i] + n].tolist()
        assert (got[row, n:] == -7).all() and mask[row].tolist() == [1] * n + [0] * (width - n)
    assert data.pad_rows(flat, offsets, [], 0).shape == (0, 0)
