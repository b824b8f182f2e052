"The encoder-book command line: each subcommand on tiny files, metrics.json, and one-line errors."
import json
import os
import subprocess
import sys
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


def test_default_epochs(tmp_path, capsys):
    "The legacy helper, and the defaults that adapt: a budget of steps, values printed and saved."
    from encoder_book import cli
    from encoder_book.finetuning import QUICK_BUDGET, choose_defaults
    assert cli.default_epochs(10_000, "cpu") == cli.FINETUNE_EPOCHS == cli.default_epochs(10**10, "cuda:0")
    assert cli.default_epochs(10**10, "cpu") * 10**10 == pytest.approx(cli.CPU_TOKEN_BUDGET)
    small = choose_defaults("transformer", 2000, [20] * 2000, "cpu")
    assert small["steps"] >= QUICK_BUDGET["transformer"][0] and small["max_length"] == 24
    train, dev = pair(tmp_path, n=40)                                     # no --epochs: chosen from the data
    m = run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "transformer", "--out",
                        tmp_path / "a", "--batch-size", 16])
    assert set(m["chosen"]) == {"epochs", "lr", "max_length", "warmup_ratio", "patience"}
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert saved["epochs"] == m["epochs"] and saved["batch_size"] == 16
    assert m["valid_examples"] + m["train_examples"] == 40 and m["dev_examples"] == 40


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


# ---- safe outputs, flags, predict/evaluate, interrupts --------------------------------------


def test_out_reuse_refused_unless_overwrite(tmp_path, capsys, pretrained):
    train, dev = pair(tmp_path, n=40)
    args = ["finetune", "--train", train, "--dev", dev, "--model", "bow", "--epochs", 1]
    first = run_ok(capsys, [*args, "--out", tmp_path / "o"])
    weights = (tmp_path / "o" / "model.safetensors").read_bytes()
    assert "--overwrite" in run_err(capsys, [*args, "--out", tmp_path / "o"])
    assert (tmp_path / "o" / "model.safetensors").read_bytes() == weights        # nothing lost
    run_ok(capsys, [*args, "--out", tmp_path / "o", "--overwrite", "--seed", 1])
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["seed"] == 1
    assert first["seed"] == 0
    assert "same folder" in run_err(capsys, ["finetune", "--train", train, "--dev", dev, "--model",
                                             "transformer", "--init", pretrained, "--out", pretrained])
    assert "holds a model" in run_err(capsys, ["tokenizer", "--corpus", train, "--vocab-size", 100,
                                               "--out", pretrained])
    (tmp_path / "mine").mkdir(); (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert "not cleared" in run_err(capsys, [*args, "--out", tmp_path / "mine", "--overwrite"])
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_pretrain_second_run_and_foreign_resume(tmp_path, capsys):
    corpus = tmp_path / "c.txt"; corpus.write_text("\n".join(tiny_corpus(40)) + "\n")
    base = ["pretrain", "--corpus", corpus, "--max-steps", 3, "--vocab-size", 300]
    run_ok(capsys, [*base, "--out", tmp_path / "p"])
    assert "--overwrite" in run_err(capsys, [*base, "--out", tmp_path / "p"])
    train, dev = pair(tmp_path, n=40)
    run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "bow", "--epochs", 1,
                    "--out", tmp_path / "f"])
    assert "resume" in run_err(capsys, [*base, "--out", tmp_path / "f", "--resume"])


@pytest.mark.parametrize("flag,value", [("--epochs", 0), ("--epochs", -1), ("--batch-size", 0),
                                        ("--lr", 0), ("--max-length", 0), ("--patience", 0),
                                        ("--warmup-ratio", 1)])
def test_non_positive_numbers_name_the_flag(tmp_path, capsys, flag, value):
    train, dev = pair(tmp_path, n=40)
    err = run_err(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "bow", flag, value,
                           "--out", tmp_path / "o"])
    assert flag in err and not (tmp_path / "o").exists()


def test_python_api_checks_numbers():
    from encoder_book.data import ArgumentError, LabelledData
    from encoder_book.finetuning import train_classifier
    d = LabelledData(["a", "b"], [0, 1])
    for kw in ({"epochs": 0}, {"batch_size": 0}, {"lr": -1.0}, {"max_length": 1}):
        with pytest.raises(ArgumentError, match=next(iter(kw))):
            train_classifier("bow", d, d, **kw)


def test_integer_labels_not_ids_are_mapped(tmp_path, capsys):
    texts, labels = tiny_sentiment(60, seed=0)
    stars = [1 if y == 0 else 5 for y in labels]
    train = write(tmp_path / "train.csv", texts, stars)
    dev = write(tmp_path / "dev.csv", texts[:20], stars[:20])
    m = run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "bow", "--out",
                        tmp_path / "o", "--epochs", 1])
    assert m["num_labels"] == 2 and m["label_names"] == ["1", "5"]
    assert "1=0" not in capsys.readouterr().err
    conf = json.loads((tmp_path / "o" / "config.json").read_text())
    assert conf["id2label"] == {"0": "1", "1": "5"}
    mixed = tmp_path / "mixed.csv"; mixed.write_text("text,label\na,1\nb,pos\n")
    assert "mixes" in run_err(capsys, ["finetune", "--train", mixed, "--dev", dev, "--model", "bow",
                                       "--out", tmp_path / "x"])


def test_unseen_dev_label_is_an_error(tmp_path, capsys):
    train, _ = pair(tmp_path, n=40, names=NAMES)
    dev = tmp_path / "dev3.tsv"; dev.write_text("sentence\tlabel\nok\tneutral\n")
    assert "neutral" in run_err(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "bow",
                                         "--out", tmp_path / "o"])


@pytest.mark.parametrize("model", ["transformer", "lstm", "bow"])
def test_predict_and_evaluate_every_kind(tmp_path, capsys, model):
    train, dev = pair(tmp_path, ".tsv", NAMES, n=60)
    run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", model, "--epochs", 1,
                    "--out", tmp_path / "m"])
    texts = tmp_path / "new texts é.txt"; texts.write_text("the film is wonderful\nit is dull\n")
    assert main(["predict", "--model", str(tmp_path / "m"), str(texts)]) == 0
    rows = [r.split("\t") for r in capsys.readouterr().out.strip().splitlines()]
    assert rows[0] == ["label", "score", "p_negative", "p_positive", "text"] and len(rows) == 3
    assert all(r[0] in NAMES and abs(float(r[2]) + float(r[3]) - 1) < 1e-3 for r in rows[1:])
    assert main(["predict", "--model", str(tmp_path / "m"), str(dev), "--format", "jsonl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 40 and set(lines[0]["probabilities"]) == set(NAMES)
    m = run_ok(capsys, ["evaluate", "--model", tmp_path / "m", "--data", dev, "--plot",
                        tmp_path / "c.png"])
    report = json.loads((tmp_path / "m" / "evaluation.json").read_text())
    assert report["examples"] == 40 and sum(map(sum, report["confusion"])) == 40
    assert m["accuracy"] == report["accuracy"] and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert abs(report["accuracy"] - metrics["dev_accuracy"]) < 1e-9        # same model, same texts


def test_hf_pipeline_reads_transformer_folder(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    train, dev = pair(tmp_path, ".tsv", NAMES, n=60)
    run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "transformer",
                    "--epochs", 1, "--positions", "absolute", "--out", tmp_path / "m"])
    clf = transformers.pipeline("text-classification", model=str(tmp_path / "m"), device="cpu")
    texts = ["the film is wonderful", "the plot is dull"]
    hf = clf(texts)
    from encoder_book.finetuning import classify, load_classifier
    model, tok, id2label = load_classifier(tmp_path / "m")
    probs = classify(model, tok, texts)
    assert [r["label"] for r in hf] == [id2label[int(p.argmax())] for p in probs]
    assert all(abs(r["score"] - float(p.max())) < 1e-4 for r, p in zip(hf, probs))


def test_interrupt_then_resume_ends_as_one_run(tmp_path, capsys, monkeypatch):
    "A stop at step 2 (what Ctrl-C asks for), then --resume: the same weights as a run never stopped."
    from safetensors.torch import load_file

    from encoder_book import cli
    train, dev = pair(tmp_path, n=80)
    args = ["finetune", "--train", str(train), "--dev", str(dev), "--model", "lstm", "--epochs", 2,
            "--batch-size", 16, "--patience", 100]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    real = cli.GracefulStop.register
    def stop_at_2(self, cfg):
        real(self, cfg); cfg.stop_after = 2
    monkeypatch.setattr(cli.GracefulStop, "register", stop_at_2)
    assert main([*args, "--out", str(tmp_path / "cut")]) == 130
    err = capsys.readouterr().err
    assert "--resume" in err and (tmp_path / "cut" / "INCOMPLETE").exists()
    assert not (tmp_path / "cut" / "config.json").exists()                 # visibly incomplete
    assert "--resume" in run_err(capsys, ["predict", "--model", tmp_path / "cut", train])
    monkeypatch.setattr(cli.GracefulStop, "register", real)
    assert main([*args, "--out", str(tmp_path / "cut"), "--resume"]) == 0
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_signal_handler_stops_at_a_step(tmp_path):
    "A real SIGINT to a running finetune: exit 130, a checkpoint, a message; --resume finishes."
    import signal
    import time
    train, dev = pair(tmp_path, n=120)
    env = {**os.environ, "ENCODER_BOOK_QUICK": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "encoder_book.cli", "finetune", "--train", str(train), "--dev",
           str(dev), "--model", "transformer", "--epochs", 40, "--patience", 1000, "--out",
           str(tmp_path / "o")]
    cmd = [str(c) for c in cmd]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for _ in range(600):                                    # wait for the first checkpoint
        if list((tmp_path / "o").glob("checkpoints/step-*")): break
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert out == "" and "checkpoint" in err and "Traceback" not in err
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["finished"] is True


def test_os_errors_are_one_line(tmp_path, capsys):
    train, dev = pair(tmp_path, n=40)
    blocker = tmp_path / "file"; blocker.write_text("x")
    base = ["finetune", "--train", train, "--dev", dev, "--model", "bow", "--epochs", 1]
    assert "is a file" in run_err(capsys, [*base, "--out", blocker])
    assert main([str(a) for a in [*base, "--out", blocker / "sub"]]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(blocker) in err and "Traceback" not in err


def test_files_get_umask_permissions(tmp_path, capsys):
    train, dev = pair(tmp_path, n=40)
    old = os.umask(0o022)
    try:
        run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "bow", "--epochs", 1,
                        "--out", tmp_path / "o"])
    finally:
        os.umask(old)
    for name in ("metrics.json", "config.json", "model.safetensors", "labels.json"):
        assert (tmp_path / "o" / name).stat().st_mode & 0o777 == 0o644, name


def test_messy_files(tmp_path, capsys):
    long_text = "word " * 40_000                                            # a 200 KB field
    train = tmp_path / "train set é.csv"
    rows = ['"a, quoted\nline",positive', f"{long_text},negative", "", "fine,positive",
            "café crème,negative"] * 10
    train.write_bytes(("\ufefftext,label\n" + "\n".join(rows) + "\n").encode("utf-8"))
    latin = tmp_path / "dev.csv"
    latin.write_bytes("text,label\ncafé,positive\nbad,negative\n".encode("cp1252"))
    base = ["finetune", "--train", train, "--dev", latin, "--model", "bow", "--epochs", 1]
    assert "--encoding" in run_err(capsys, [*base, "--out", tmp_path / "o"])
    m = run_ok(capsys, [*base, "--encoding", "cp1252", "--out", tmp_path / "o"])
    assert m["train_examples"] + m["valid_examples"] == 40 and m["dev_examples"] == 2


def test_stdout_is_only_json_and_help(tmp_path, capsys):
    corpus = tmp_path / "c.txt"; corpus.write_text("\n".join(tiny_corpus(40)) + "\n")
    run_ok(capsys, ["pretrain", "--corpus", corpus, "--max-steps", 3, "--vocab-size", 300, "--out",
                    tmp_path / "p"])
    assert main(["pretrain", "--corpus", str(corpus), "--max-steps", "3", "--vocab-size", "300",
                 "--out", str(tmp_path / "p"), "--resume"]) == 0   # finished: resumes at its end
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and json.loads(out[0])["steps"] == 3       # the status went to stderr
    for sub in ("tokenizer", "pretrain", "finetune", "predict", "evaluate"):
        assert main([sub, "--help"]) == 0
        text = capsys.readouterr().out
        assert "example:" in text and "exit status" in text and "--device" in text, sub
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("encoder-book ")


def test_pretrain_electra_absolute_positions(tmp_path, capsys):
    "--objective electra saves the discriminator and, in generator/, a masked LM."
    m = run_ok(capsys, ["pretrain", "--corpus", "tiny", "--out", tmp_path / "e", "--max-steps", 3,
                        "--objective", "electra", "--positions", "absolute", "-q"])
    assert m["objective"] == "electra" and m["finished"]
    cfg = json.loads((tmp_path / "e" / "config.json").read_text())
    gen = json.loads((tmp_path / "e" / "generator" / "config.json").read_text())
    assert cfg["position_embedding_type"] == gen["position_embedding_type"] == "absolute"
    assert gen["architectures"] == ["BertForMaskedLM"] and gen["num_hidden_layers"] >= 1
    assert (tmp_path / "e" / "generator" / "vocab.txt").is_file()
    err = run_err(capsys, ["pretrain", "--corpus", "tiny", "--out", tmp_path / "x",
                           "--objective", "gan"])
    assert "--objective" in err


def test_pretrain_mlm_sop_then_finetune_pairs(tmp_path, capsys):
    "--objective mlm+sop saves a BertForPreTraining that finetune --init starts from."
    m = run_ok(capsys, ["pretrain", "--corpus", "tiny", "--out", tmp_path / "s", "--max-steps", 3,
                        "--objective", "mlm+sop", "-q"])
    assert m["objective"] == "mlm+sop" and m["finished"] and 0 <= m["eval_sop_accuracy"] <= 1
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    assert cfg["architectures"] == ["BertForPreTraining"]
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("sentence1\tsentence2\tlabel\n" + "".join(
        f"the film is good .\tit was {w} .\t{i % 2}\n" for i, w in enumerate(["fine", "bad"] * 12)))
    f = run_ok(capsys, ["finetune", "--task", "pair", "--train", pairs, "--dev", pairs,
                        "--model", "transformer", "--init", tmp_path / "s", "--epochs", 1,
                        "--out", tmp_path / "clf", "-q"])
    assert f["pairs"] and 0 <= f["dev_accuracy"] <= 1


def test_python_dash_m_encoder_book():
    "`python -m encoder_book` is the same command as `encoder-book`."
    r = subprocess.run([sys.executable, "-m", "encoder_book", "--version"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout.startswith("encoder-book "), r.stderr
    r = subprocess.run([sys.executable, "-m", "encoder_book", "finetune"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "--train" in r.stderr


def _conll(path: Path, n: int, seed: int) -> Path:
    "A small CoNLL-2003-style file (IOB1 tags) of made-up sentences."
    import random
    rng = random.Random(seed)
    people, places = ["Smith", "Jones", "Brown", "Ekeus"], ["Paris", "London", "Bonn", "Oslo"]
    lines = ["-DOCSTART- -X- O O", ""]
    for _ in range(n):
        p, q = rng.choice(people), rng.choice(places)
        words = [("Mr", "O"), (p, "I-PER"), ("flew", "O"), ("to", "O"), (q, "I-LOC"), (".", "O")]
        lines += [f"{w} NNP I-NP {t}" for w, t in words] + [""]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_finetune_tag_evaluate_predict(tmp_path, capsys):
    train, dev = _conll(tmp_path / "train.txt", 60, 0), _conll(tmp_path / "dev.txt", 20, 1)
    m = run_ok(capsys, ["finetune", "--task", "tag", "--train", train, "--dev", dev, "--test", dev,
                        "--model", "lstm", "--epochs", 3, "--out", tmp_path / "tagger"])
    assert m["task"] == "tag" and 0 <= m["dev_f1"] <= 1 and m["test_f1"] == m["dev_f1"]
    assert not (tmp_path / "tagger" / "INCOMPLETE").exists()
    e = run_ok(capsys, ["evaluate", "--model", tmp_path / "tagger", "--data", dev])
    assert abs(e["f1"] - m["dev_f1"]) < 1e-9 and e["entities"] == 40
    src = tmp_path / "texts.txt"
    src.write_text("Mr Smith flew to Oslo .\nMr Brown flew to Paris .\n")
    assert main(["predict", "--model", tmp_path / "tagger", src, "--format", "jsonl"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 2 and rows[0]["words"][1] == "Smith" and len(rows[0]["tags"]) == 6
    err = run_err(capsys, ["finetune", "--task", "tag", "--train", train, "--dev", dev,
                           "--model", "bow", "--out", tmp_path / "x"])
    assert "bow" in err
    bad = tmp_path / "bad.txt"
    bad.write_text("Mr NNP I-NP O\nSmith NNP I-PER\n")
    err = run_err(capsys, ["finetune", "--task", "tag", "--train", bad, "--dev", dev,
                           "--model", "lstm", "--out", tmp_path / "y"])
    assert "bad.txt" in err and "2" in err
    err = run_err(capsys, ["finetune", "--train", train, "--dev", dev, "--test", dev,
                           "--model", "bow", "--out", tmp_path / "z"])
    assert "--test is for --task tag" in err


def test_pretrain_task_corpus_stage_and_roformer_copy(tmp_path, capsys):
    "--task-corpus: a second stage on a labelled file's texts; a rotary run saves roformer/."
    task = tmp_path / "task.tsv"
    task.write_text("sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(tiny_corpus(30))))
    m = run_ok(capsys, ["pretrain", "--corpus", "tiny", "--out", tmp_path / "p", "--max-steps", 10,
                        "--task-corpus", task, "--task-fraction", 0.3, "--block-size", 32,
                        "--short-block-size", 16, "-q"])
    assert m["finished"] and m["steps"] == 10
    assert [(s["corpus"], s["steps"], s["block_size"]) for s in m["stages"]] == [
        ("tiny", 6, 16), ("tiny", 1, 32), (str(task), 3, 32)]
    assert m["dropout"] == 0.0                                    # pretraining: no dropout
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["hidden_dropout_prob"] == 0.1                      # fine-tuning keeps BERT's
    rof = json.loads((tmp_path / "p" / "roformer" / "config.json").read_text())
    assert rof["architectures"] == ["RoFormerForMaskedLM"]


@pytest.mark.parametrize("extra, match", [
    (["--task-fraction", "0.2"], "--task-corpus"),
    (["--task-corpus", "TASK", "--task-fraction", "1.5"], "--task-fraction"),
    (["--task-corpus", "MISSING"], "no such file"),
])
def test_pretrain_task_corpus_bad_input(tmp_path, capsys, extra, match):
    task = tmp_path / "t.txt"
    task.write_text("some text\n")
    extra = [str(task) if a == "TASK" else str(tmp_path / "m.txt") if a == "MISSING" else a
             for a in extra]
    err = run_err(capsys, ["pretrain", "--corpus", "tiny", "--out", tmp_path / "p", *extra])
    assert match in err
    assert not (tmp_path / "p").exists()                           # nothing written


def test_pretrain_precision_default_and_bf16_without_native(tmp_path, capsys, monkeypatch):
    "--precision auto is what pretrain resolves for the device; bf16 without it is one line."
    import encoder_book.pretraining as pt

    m = run_ok(capsys, ["pretrain", "--corpus", "tiny", "--out", tmp_path / "p", "-q"])
    assert m["precision"] == pt.pretrain_precision("cpu", "auto")
    monkeypatch.setattr(pt, "cpu_has_native_bf16", lambda: False)
    err = run_err(capsys, ["pretrain", "--corpus", "tiny", "--out", tmp_path / "q",
                           "--precision", "bf16"])
    assert "--precision bf16" in err and "no native bf16" in err
    assert not (tmp_path / "q").exists()                           # nothing written


def test_pretrain_default_steps_follow_precision(monkeypatch):
    "The default step count: more steps where bf16 makes each one cheaper (real mode)."
    from encoder_book import cli

    monkeypatch.setattr(cli, "QUICK", False)
    monkeypatch.setattr(cli, "quick", lambda real, q: real)
    assert cli._pretrain_steps("cpu", "bf16") > cli._pretrain_steps("cpu", "fp32")
    assert cli._pretrain_steps("cuda", "bf16") == cli._pretrain_steps("cuda", "fp16")


# ---------------------------------------------------------------- sentence pairs

def _pairs(path: Path, n: int, seed: int, cols=("sentence1", "sentence2")) -> Path:
    "Pairs labelled 1 when the second text repeats the first's sentiment, else 0."
    texts, labels = tiny_sentiment(2 * n, seed=seed)
    rows = [f"{texts[i]}\t{texts[n + i]}\t{int(labels[i] == labels[n + i])}" for i in range(n)]
    path.write_text(f"{cols[0]}\t{cols[1]}\tlabel\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("model", ["transformer", "lstm"])
def test_finetune_pairs_then_predict_and_evaluate(tmp_path, capsys, model):
    train, dev = _pairs(tmp_path / "train.tsv", 80, 0), _pairs(tmp_path / "dev.tsv", 30, 1)
    m = run_ok(capsys, ["finetune", "--task", "pair", "--train", train, "--dev", dev, "--model", model,
                        "--epochs", 1, "--out", tmp_path / "m"])
    saved = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert saved["pairs"] is True and 0 <= saved["dev_f1"] <= 1 and m["dev_accuracy"] == saved["dev_accuracy"]
    e = run_ok(capsys, ["evaluate", "--model", tmp_path / "m", "--data", dev])
    assert abs(e["accuracy"] - saved["dev_accuracy"]) < 1e-9 and abs(e["f1"] - saved["dev_f1"]) < 1e-9
    stdin = tmp_path / "in.txt"; stdin.write_text("the film is good\tit is great\nit is dull\tawful\n")
    assert main(["predict", "--model", str(tmp_path / "m"), str(stdin)]) == 0
    rows = [r.split("\t") for r in capsys.readouterr().out.strip().splitlines()]
    assert rows[0][-2:] == ["text", "text_pair"] and len(rows) == 3 and rows[2][-1] == "awful"
    assert main(["predict", "--model", str(tmp_path / "m"), str(dev), "--format", "jsonl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 30 and {"text", "text_pair", "label"} <= set(lines[0])


def test_pair_errors_are_one_line(tmp_path, capsys):
    train, dev = _pairs(tmp_path / "train.tsv", 60, 0), _pairs(tmp_path / "dev.tsv", 20, 1)
    (tmp_path / "one").mkdir()
    single, _ = pair(tmp_path / "one", ".tsv", None, n=40)
    assert "needs two text columns" in run_err(capsys, ["finetune", "--task", "pair", "--train", single,
                                                        "--dev", single, "--model", "lstm",
                                                        "--out", tmp_path / "x"])
    assert not (tmp_path / "x").exists()
    assert "mixed" in run_err(capsys, ["finetune", "--train", train, "--dev", single, "--model", "lstm",
                                       "--out", tmp_path / "y"])
    run_ok(capsys, ["finetune", "--train", train, "--dev", dev, "--model", "bow", "--epochs", 1,
                    "--out", tmp_path / "m"])                  # two text columns: read as pairs
    assert "one text column" in run_err(capsys, ["evaluate", "--model", tmp_path / "m", "--data", single])
    one = tmp_path / "one.txt"; one.write_text("only one text\n")
    assert "line 1" in run_err(capsys, ["predict", "--model", tmp_path / "m", one])
    weird = _pairs(tmp_path / "weird.tsv", 20, 2, cols=("left", "right"))
    assert "--pair-column" in run_err(capsys, ["predict", "--model", tmp_path / "m", weird])
    assert main(["predict", "--model", str(tmp_path / "m"), str(weird), "--text-column", "left",
                 "--pair-column", "right"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 21
    assert "second text column 'nope'" in run_err(capsys, ["finetune", "--train", train, "--dev", dev,
                                                           "--model", "bow", "--pair-column", "nope",
                                                           "--out", tmp_path / "z"])


def test_pretrain_task_block_size(tmp_path, capsys):
    corpus = tmp_path / "c.txt"; corpus.write_text("\n".join(tiny_corpus(40)) + "\n")
    task, _ = pair(tmp_path, ".tsv", NAMES, n=60)
    base = ["pretrain", "--corpus", corpus, "--max-steps", 4, "--vocab-size", 300]
    assert "needs --task-corpus" in run_err(capsys, base + ["--task-block-size", 16, "--out", tmp_path / "a"])
    assert "must be in [8, --block-size 32]" in run_err(
        capsys, base + ["--task-corpus", task, "--task-block-size", 64, "--out", tmp_path / "a"])
    assert not (tmp_path / "a").exists()
    m = run_ok(capsys, base + ["--task-corpus", task, "--task-block-size", 16, "--out", tmp_path / "b"])
    assert m["stages"][-1]["block_size"] == 16 and m["finished"]


def test_pretrain_short_blocks_off(tmp_path, capsys):
    "--short-block-size 0 turns the short first blocks off (chapter 6's own recipe)."
    corpus = tmp_path / "c.txt"; corpus.write_text("\n".join(tiny_corpus(40)) + "\n")
    base = ["pretrain", "--corpus", corpus, "--max-steps", 4, "--vocab-size", 300,
            "--block-size", 128]
    m = run_ok(capsys, base + ["--out", tmp_path / "a", "-q"])
    assert [s["block_size"] for s in m["stages"]] == [64, 128]     # the default: short first
    m = run_ok(capsys, base + ["--short-block-size", 0, "--dropout", 0.1, "--out", tmp_path / "b",
                               "-q"])
    assert [s["block_size"] for s in m["stages"]] == [128] and m["dropout"] == 0.1
    assert "0 or more" in run_err(capsys, base + ["--short-block-size", -1, "--out", tmp_path / "c"])


def test_pretrain_steps_fit_the_minutes(tmp_path, capsys, monkeypatch):
    import encoder_book.cli as cli
    from encoder_book.pretraining import small_config

    assert cli.budget_steps(10, {"long": 1.0}, 0, 10**6) == 600
    # stage 1 (half): 90% short at 1 s, 10% long at 2 s; the task half at 0.5 s: 0.8 s
    assert cli.budget_steps(10, {"long": 2.0, "short": 1.0, "task": 0.5}, 0.5, 10**6) == 750
    assert cli.budget_steps(10, {"long": 1.0}, 0, 100) == 100       # never above the recipe
    assert cli.budget_steps(0.001, {"long": 1.0}, 0, 100) == 10     # at least 10
    assert cli.budget_steps(0.001, {"long": 1.0}, 0, 5) == 5
    s = cli.seconds_per_step(small_config(50, hidden_size=16, num_hidden_layers=1,
                                          num_attention_heads=2, intermediate_size=32), 8, 2,
                             "fp32", steps=2)
    assert 0 < s < 10
    monkeypatch.setattr(cli, "QUICK", False)                         # sizes stay quick
    monkeypatch.setattr(cli, "_pretrain_steps", lambda device, precision: 1000)
    timed = []
    dropouts = []
    def fake_timing(c, size, bs, p):
        dropouts.append((c.hidden_dropout_prob, c.attention_probs_dropout_prob))
        return timed.append(size) or 0.01
    monkeypatch.setattr(cli, "seconds_per_step", fake_timing)
    corpus = tmp_path / "c.txt"; corpus.write_text("\n".join(tiny_corpus(40)) + "\n")
    base = ["pretrain", "--corpus", corpus, "--vocab-size", 300, "--block-size", 32,
            "--batch-size", 4, "--minutes", 0.002, "--out", tmp_path / "m"]
    m = run_ok(capsys, base)
    assert m["steps"] == 12 and m["steps_budget"]["max_steps"] == 12 and timed == [32]
    assert dropouts == [(0.0, 0.0)]  # timed as it trains: pretraining's dropout (0)
    saved = json.loads((tmp_path / "m" / "steps.json").read_text())
    assert saved["minutes"] == 0.002 and saved["seconds_per_step"] == {"long": 0.01}
    assert "not both" in run_err(capsys, base[:-2] + ["--max-steps", 5, "--out", tmp_path / "n"])


def test_finetune_qa_evaluate_predict(tmp_path, capsys):
    from test_qa import squad_file

    squad = squad_file(tmp_path / "squad.json", n=10)  # 10 articles, 20 questions
    m = run_ok(capsys, ["finetune", "--task", "qa", "--model", "transformer", "--train", squad,
                        "--dev", squad, "--epochs", 2, "--out", tmp_path / "qa", "-q"])
    # 16 questions to train on, less the one kept back to choose the step
    assert m["task"] == "qa" and m["dev_questions"] == 4 and m["train_questions"] == 15
    assert 0 <= m["dev_f1"] <= 100 and not (tmp_path / "qa" / "INCOMPLETE").exists()
    e = run_ok(capsys, ["evaluate", "--model", tmp_path / "qa", "--data", squad])
    assert e["questions"] == 20 and 0 <= e["exact_match"] <= e["f1"] <= 100
    assert json.loads(Path(e["saved"]).read_text())["answers"].keys() >= {"0-0", "9-1"}
    asks = tmp_path / "asks.jsonl"
    asks.write_text('{"question": "Where was Ada born?", "context": "Ada was born in London."}\n'
                    '{"id": "q2", "question": "Who?", "context": "Kurt did."}\n')
    assert main(["predict", "--model", str(tmp_path / "qa"), str(asks)]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [r["id"] for r in rows] == ["1", "q2"] and all(isinstance(r["answer"], str) for r in rows)
    assert main(["predict", "--model", str(tmp_path / "qa"), str(asks), "--format", "tsv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "id\tquestion\tanswer"
    # bad input: one line each, nothing trained
    assert "--task qa trains a transformer" in run_err(capsys, [
        "finetune", "--task", "qa", "--model", "lstm", "--train", squad, "--dev", squad,
        "--out", tmp_path / "x"])
    assert "--tokenizer is not for --task qa" in run_err(capsys, [
        "finetune", "--task", "qa", "--model", "transformer", "--train", squad, "--dev", squad,
        "--tokenizer", tmp_path / "qa", "--out", tmp_path / "x"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "context": "c"}\n{"question": "no context"}\n')
    err = run_err(capsys, ["predict", "--model", tmp_path / "qa", bad])
    assert "bad.jsonl, line 2" in err
    assert "reads a file" in run_err(capsys, ["predict", "--model", tmp_path / "qa", "-"])
    unanswered = json.loads(squad.read_text())
    unanswered["data"][0]["paragraphs"][0]["qas"][0]["answers"] = []
    (tmp_path / "u.json").write_text(json.dumps(unanswered))
    assert "no gold answer" in run_err(capsys, ["evaluate", "--model", tmp_path / "qa",
                                                "--data", tmp_path / "u.json"])
    assert not (tmp_path / "x").exists()
