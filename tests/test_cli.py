"The encoder-book command line: each subcommand on tiny files, metrics.json, and one-line errors."
import json, os, subprocess, sys
from pathlib import Path
import pytest
from encoder_book.cli import main
from encoder_book.core import tiny_corpus, tiny_sentiment

pytestmark = pytest.mark.skipif(os.environ.get("ENCODER_BOOK_QUICK", "0") in ("", "0"),
                                reason="CLI tests use quick mode sizes (ENCODER_BOOK_QUICK=1)")

NAMES = ["negative", "positive"]


def write(path: Path, texts, labels, names=None, text_col="sentence", label_col="label") -> Path:
    "A labelled file in the format its suffix names; `names` turns integer labels into strings."
    labs = [names[y] for y in labels] if names else list(labels)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({text_col: t, label_col: y}) + "\n" for t, y in zip(texts, labs)))
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        path.write_text(f"{text_col}{sep}{label_col}\n" + "".join(f"{t.replace(',', '')}{sep}{y}\n"
                                                                  for t, y in zip(texts, labs)))
    return path


def pair(tmp_path, suffix=".tsv", names=None, n=80, **kw):
    return (write(tmp_path / f"train{suffix}", *tiny_sentiment(n, seed=0), names=names, **kw),
            write(tmp_path / f"dev{suffix}", *tiny_sentiment(40, seed=1), names=names, **kw))


def run_ok(capsys, argv) -> dict:
    assert main([str(a) for a in argv]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return json.loads(lines[-1])


def run_err(capsys, argv) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("encoder-book: error:"), err
    return err


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    "A tiny pretrained folder made by `encoder-book pretrain` (quick sizes, 3 steps)."
    d = tmp_path_factory.mktemp("pre")
    corpus = d / "corpus.txt"
    corpus.write_text("\n".join(tiny_corpus(40)) + "\n")
    assert main(["pretrain", "--corpus", str(corpus), "--out", str(d / "bert"), "--max-steps", "3",
                 "--vocab-size", "300"]) == 0
    return d / "bert"


def test_tokenizer(tmp_path, capsys):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("\n".join(tiny_corpus(30)) + "\n"); b.write_text("Another File Entirely\n")
    m = run_ok(capsys, ["tokenizer", "--corpus", a, b, "--vocab-size", 200, "--out", tmp_path / "tok"])
    vocab = (tmp_path / "tok" / "vocab.txt").read_text().split()
    assert m["lines"] == 31 and m["vocab_size"] == len(vocab) <= 200 and "[CLS]" in vocab
    assert "A" not in vocab and "a" in vocab and m["lowercase"]             # lowercased by default
    run_ok(capsys, ["tokenizer", "--corpus", a, b, "--vocab-size", 200, "--out", tmp_path / "cased", "--cased"])
    assert "A" in (tmp_path / "cased" / "vocab.txt").read_text().split()


def test_pretrain_files(pretrained):
    for f in ("config.json", "model.safetensors", "vocab.txt", "metrics.json"):
        assert (pretrained / f).is_file(), f
    m = json.loads((pretrained / "metrics.json").read_text())
    assert m["steps"] == 3 and m["final_loss"] > 0


@pytest.mark.parametrize("suffix,names", [(".tsv", None), (".csv", NAMES), (".jsonl", NAMES)])
def test_finetune_lstm(tmp_path, capsys, suffix, names):
    train, dev = pair(tmp_path, suffix, names)
    m = run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "lstm", "--out", tmp_path / "o",
                        "--epochs", 1])
    saved = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert saved == m
    assert m["model"] == "lstm" and 0 <= m["dev_accuracy"] <= 1 and m["params"] > 0 and m["train_seconds"] > 0
    assert m["num_labels"] == 2 and m["label_names"] == (names or ["0", "1"])
    assert (tmp_path / "o" / "vocab.txt").is_file() and (tmp_path / "o" / "labels.json").is_file()


@pytest.mark.parametrize("suffix,names", [(".tsv", NAMES), (".jsonl", None)])
def test_finetune_transformer_scratch(tmp_path, capsys, suffix, names):
    train, dev = pair(tmp_path, suffix, names)
    m = run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "transformer", "--out", tmp_path / "o",
                        "--epochs", 1, "--batch-size", 16])
    out = tmp_path / "o"
    for f in ("config.json", "model.safetensors", "vocab.txt", "metrics.json", "labels.json"):
        assert (out / f).is_file(), f
    assert m["model"] == "transformer" and m["init"] is None and 0 <= m["dev_accuracy"] <= 1
    from encoder_book.bert import BertForSequenceClassification
    model = BertForSequenceClassification.from_pretrained(out)
    assert sum(p.numel() for p in model.parameters()) == m["params"]
    assert json.loads((out / "config.json").read_text())["id2label"]["1"] == (names or ["0", "1"])[1]


def test_default_epochs(tmp_path, capsys, monkeypatch):
    from encoder_book import cli
    assert cli.default_epochs(10_000, "cpu") == cli.FINETUNE_EPOCHS == cli.default_epochs(10**10, "cuda:0")
    assert cli.default_epochs(10**10, "cpu") * 10**10 == pytest.approx(cli.CPU_TOKEN_BUDGET)   # part of a pass
    assert cli.default_epochs(10**10, "cpu", 2, 10**9) == 0.1 and cli.default_epochs(100, "cpu", 2, 10**9) == 2
    assert cli.default_epochs(cli.CPU_TOKEN_BUDGET // 2, "cpu") == 2.0   # in between: what the budget allows
    train, dev = pair(tmp_path, n=40)                                     # no --epochs: the default is used ...
    m = run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "transformer", "--out", tmp_path / "a",
                        "--batch-size", 16])
    assert m["epochs"] == cli.FINETUNE_EPOCHS and m["steps"] == cli.FINETUNE_EPOCHS * (40 // 16)
    import torch
    if torch.cuda.is_available():
        return                                                            # the budget is for CPUs only
    monkeypatch.setattr(cli, "CPU_TOKEN_BUDGET", 1)                       # ... and shrinks under a tiny budget,
    m = run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "transformer", "--out", tmp_path / "b",
                        "--batch-size", 16])
    assert 0 < m["epochs"] < 0.01 and m["steps"] == 1                    # down to part of a pass (one step here)
    m = run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "lstm", "--out", tmp_path / "c",
                        "--batch-size", 16])
    from encoder_book.lstm import lstm_preset
    assert m["epochs"] == lstm_preset()["epochs"]                        # the LSTM has its own budget ...
    monkeypatch.setattr(cli, "LSTM_CPU_TOKEN_BUDGET", 1)
    m = run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "lstm", "--out", tmp_path / "d",
                        "--batch-size", 16])
    assert 0 < m["epochs"] < 0.01 and m["steps"] == 1                    # ... which caps it the same way


def test_finetune_transformer_init_three_classes(tmp_path, capsys, pretrained):
    texts, labels = tiny_sentiment(90, seed=2)
    labels = [i % 3 for i in range(len(texts))]                  # a 3-class set, string labels, custom columns
    names = ["bad", "meh", "good"]
    train = write(tmp_path / "train.csv", texts, labels, names, text_col="review", label_col="stars")
    dev = write(tmp_path / "dev.csv", texts[:30], labels[:30], names, text_col="review", label_col="stars")
    m = run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "transformer", "--init", pretrained,
                        "--out", tmp_path / "o", "--epochs", 1, "--text-column", "review", "--label-column", "stars",
                        "--lr", "1e-4"])
    assert m["num_labels"] == 3 and m["label_names"] == sorted(names) and m["init"] == str(pretrained)
    assert m["vocab_size"] == json.loads((pretrained / "metrics.json").read_text())["vocab_size"]
    assert json.loads((tmp_path / "o" / "config.json").read_text())["num_labels"] == 3


def test_finetune_init_seeded(tmp_path, capsys, pretrained):
    "--init with the same --seed twice in one process: the same model (the new head's start follows the seed too)."
    from safetensors.torch import load_file
    train, dev = pair(tmp_path, n=40)
    def head(seed, name):
        run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "transformer", "--init", pretrained,
                        "--out", tmp_path / name, "--epochs", 1, "--batch-size", 16, "--seed", seed])
        return load_file(tmp_path / name / "model.safetensors")
    a, b, c = head(0, "a"), head(0, "b"), head(1, "c")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert not a["classifier.weight"].equal(c["classifier.weight"])


@pytest.mark.parametrize("model", ["transformer", "lstm"])
def test_finetune_given_tokenizer(tmp_path, capsys, pretrained, model):
    "--tokenizer DIR: a model from scratch that uses another folder's vocabulary (here the pretrained one's)."
    train, dev = pair(tmp_path, n=40)
    m = run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", model, "--out", tmp_path / "o",
                        "--epochs", 1, "--batch-size", 16, "--tokenizer", pretrained])
    assert (tmp_path / "o" / "vocab.txt").read_text() == (pretrained / "vocab.txt").read_text()
    if model == "transformer":
        assert m["init"] is None and m["tokenizer"] == str(pretrained)
        assert m["vocab_size"] == json.loads((pretrained / "metrics.json").read_text())["vocab_size"]
    assert "--tokenizer" in run_err(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "transformer",
                                             "--init", pretrained, "--tokenizer", pretrained, "--out", tmp_path / "x"])
    assert "vocab" in run_err(capsys, ["finetune", "--train", train, "--dev", dev, "--model", model,
                                       "--tokenizer", tmp_path / "none", "--out", tmp_path / "x"])


def test_errors(tmp_path, capsys):
    train, dev = pair(tmp_path, ".tsv", NAMES, n=40)
    base = ["finetune", "--dev", dev, "--model", "lstm", "--out", tmp_path / "o"]
    assert "nope.tsv" in run_err(capsys, ["finetune", "--train", tmp_path / "nope.tsv", *base[1:]])
    assert "review" in run_err(capsys, ["finetune", "--train", train, *base[1:], "--text-column", "review"])
    empty = tmp_path / "empty.tsv"; empty.write_text("")
    run_err(capsys, ["finetune", "--train", empty, *base[1:]])
    latin = tmp_path / "latin.tsv"; latin.write_bytes("sentence\tlabel\ncaf\xe9 au lait\t1\n".encode("latin-1"))
    run_err(capsys, ["finetune", "--train", latin, *base[1:]])
    assert "--model" in run_err(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "gru",
                                         "--out", tmp_path / "o"])
    assert "--init" in run_err(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "transformer",
                                        "--init", tmp_path, "--out", tmp_path / "o"])
    run_err(capsys, ["tokenizer", "--corpus", tmp_path / "missing.txt", "--vocab-size", 100, "--out", tmp_path / "t"])
    run_err(capsys, ["pretrain", "--corpus", tmp_path / "missing.txt", "--out", tmp_path / "p"])


def test_subprocess(tmp_path):
    train, dev = pair(tmp_path, ".tsv", None, n=40)
    env = {**os.environ, "ENCODER_BOOK_QUICK": "1"}
    ok = subprocess.run([sys.executable, "-m", "encoder_book.cli", "finetune", "--train", str(train), "--dev",
                         str(dev), "--model", "lstm", "--out", str(tmp_path / "o"), "--epochs", "1"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["dev_accuracy"] >= 0
    bad = subprocess.run([sys.executable, "-m", "encoder_book.cli", "finetune", "--train", str(tmp_path / "no.tsv"),
                          "--dev", str(dev), "--model", "lstm", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [l for l in bad.stderr.strip().splitlines() if "error" in l]
    assert len(bad.stderr.strip().splitlines()) == 1
