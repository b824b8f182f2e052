"""Issue 19's experiment: pretrain with the chosen recipe in a wall-clock budget, then
fine-tune on SST-2 with --init (and from scratch) for several seeds; logs and a results
JSON under chapters/runs/ (git-ignored).

Run it in the background on an otherwise idle 2-core machine, e.g.
    nohup .venv/bin/python scripts/pretrain_study.py > chapters/runs/study.log 2>&1 &
and `--tiny` proves the plumbing end to end in a minute (tiny corpus, tiny model).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "chapters" / "runs" / "pretrain_study"))
    p.add_argument(
        "--data",
        default=os.environ.get(
            "ENCODER_BOOK_DATA", str(ROOT.parent / "shared" / "data")
        ),
    )
    p.add_argument("--objective", default="mlm", choices=["mlm", "electra"])
    p.add_argument(
        "--positions",
        default="rotary",
        choices=["rotary", "absolute"],
        help="rotary (transformers refuses the folder) or learned absolute (HF BERT)",
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=55.0,
        help="pretraining budget (wall clock, calibrated): default 55",
    )
    p.add_argument(
        "--task-fraction",
        type=float,
        default=0.2,
        help="share of the steps on SST-2's training sentences (0: none)",
    )
    p.add_argument("--short-block-size", type=int, default=64)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--precision", default="auto")
    p.add_argument("--threads", default="auto")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--schedule", default="linear", choices=["linear", "one-cycle"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--no-scratch", action="store_true", help="skip the from-scratch runs"
    )
    p.add_argument("--steps", type=int, help="pretraining steps (skips calibration)")
    p.add_argument("--tiny", action="store_true", help="seconds-long plumbing check")
    p.add_argument(
        "--lstm",
        action="store_true",
        help="also fine-tune the LSTM (chapter 5), same seeds",
    )
    p.add_argument(
        "--summary",
        help="also write a compact JSON of the results here (no machine paths)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="fine-tunes run at once (each gets threads / jobs); default 1",
    )
    p.add_argument(
        "--arms-from",
        metavar="SUMMARY",
        help="an earlier --summary: its arms that do not depend on the pretrained "
        "model (scratch, lstm) are read from it instead of run again",
    )
    p.add_argument(
        "--cli-defaults",
        action="store_true",
        help="pretrain with `encoder-book pretrain` and its defaults (WikiText-2 and "
        "--task-corpus SST-2 train) instead of the recipe options above",
    )
    return p.parse_args()


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def write_summary(path: Path, results: dict, pre: Path, a) -> None:
    "The results without machine paths: what a chapter cell reads back."
    m = results["pretrain"]
    stages = []
    for i, st in enumerate(m.get("stages", []), 1):
        rec = pre / "training" / f"stage-{i}" / "stage.json"
        rec = json.loads(rec.read_text()) if rec.is_file() else {}
        log_file = pre / "training" / f"stage-{i}" / "metrics.jsonl"
        evals = [
            json.loads(line)
            for line in (
                log_file.read_text().splitlines() if log_file.is_file() else []
            )
            if '"eval_loss"' in line
        ]
        corpus = Path(str(st["corpus"])).name
        stages.append(
            {
                "corpus": "SST-2 train" if corpus == "train.tsv" else corpus,
                "steps": st["steps"],
                "block_size": st["block_size"],
                "seconds": rec.get("seconds"),
                "tokens": rec.get("tokens"),
                # WikiText-2 validation at the stage's end (the first corpus's)
                "eval_loss": evals[-1]["eval_loss"] if evals else None,
            }
        )
    keep = ("objective", "steps", "params", "batch_size", "vocab_size", "precision")
    summary = {
        "command": "scripts/pretrain_study.py"
        + (" --cli-defaults" if a.cli_defaults else "")
        + (" --lstm" if a.lstm else ""),
        "seeds": a.seeds,
        "pretrain": {
            **{k: m.get(k) for k in keep},
            "threads": m.get("threads"),
            "wall_seconds": results["pretrain_wall_seconds"],
            "train_seconds": m.get("train_seconds"),
            "stages": stages,
            **{k: v for k, v in m.items() if k.startswith("eval_")},
        },
        "sst2_dev": results["runs"],
    }
    if results.get("arms_from"):
        summary["arms_from"] = results["arms_from"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1) + "\n")
    log(f"summary: {path}")


def main() -> int:
    a = parse()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.tiny:
        os.environ["ENCODER_BOOK_QUICK"] = "1"
    import torch

    from encoder_book.bert import BertConfig
    from encoder_book.data import load_labelled
    from encoder_book.pretraining import pretrain, small_config
    from encoder_book.train import TrainConfig

    if a.tiny:
        train_tsv, dev_tsv = out / "train.tsv", out / "dev.tsv"
        for split, path in (("train", train_tsv), ("dev", dev_tsv)):
            d = load_labelled("tiny", split)
            rows = "".join(f"{t}\t{y}\n" for t, y in zip(d.texts, d.labels))
            path.write_text("sentence\tlabel\n" + rows)
        corpus, vocab = "tiny", 300
        config = BertConfig(
            vocab_size=1,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    else:
        os.environ.setdefault("ENCODER_BOOK_DATA", a.data)
        train_tsv = Path(a.data) / "sst2" / "train.tsv"
        dev_tsv = Path(a.data) / "sst2" / "dev.tsv"
        corpus, vocab = "wikitext-2", 8000
        config = small_config(1, position_embedding_type=a.positions)
    for f in (train_tsv, dev_tsv):
        if not f.is_file():
            sys.exit(f"pretrain_study: {f}: no such file (see --data)")
    common = dict(
        config=config,
        vocab_size=vocab,
        block_size=a.block_size,
        objective=a.objective,
        precision=a.precision,
        threads=a.threads,
        dropout=a.dropout,
        schedule=a.schedule,
        batch_size=a.batch_size,
        short_block_size=a.short_block_size or None,
        position_init="sinusoidal" if a.positions == "absolute" else None,
        unk_as_special_token=True,
        progress=False,
    )
    train_config = TrainConfig(
        lr=a.lr,
        warmup_ratio=0.06,
        batch_size=a.batch_size,
        device="cpu",
        progress=False,
    )

    def stages(n: int) -> list:
        task = round(a.task_fraction * n)
        s = [(corpus, n - task)]
        return s + [(str(train_tsv), task)] if task else s

    # 1. calibration: seconds per step of this recipe on this machine
    steps = a.steps or (6 if a.tiny else None)
    if steps is None and not a.cli_defaults:
        cal = out / "calibration"
        shutil.rmtree(cal, ignore_errors=True)
        n = 30
        t0 = time.perf_counter()
        m = pretrain(
            corpus,
            cal,
            stages=[(corpus, n)],
            train_config=train_config,
            **{**common, "short_block_size": None},
        )
        per_step = m["train_seconds"] / n
        overhead = time.perf_counter() - t0 - m["train_seconds"]  # tokenizer, packing
        budget = a.minutes * 60 - 2 * overhead
        steps = max(10, int(0.95 * budget / per_step))
        log(
            f"calibration: {per_step:.2f} s/step at {a.block_size} tokens, "
            f"{overhead:.0f} s set-up: {steps} steps in {a.minutes} min"
        )
        (out / "calibration.json").write_text(
            json.dumps({**m, "per_step": per_step, "overhead": overhead})
        )
    # 2. pretraining
    pre = out / "pretrained"
    t0 = time.perf_counter()
    previous = out / "results.json"
    previous = json.loads(previous.read_text()) if previous.is_file() else {}
    done_before = (pre / "metrics.json").is_file() and not (pre / "INCOMPLETE").exists()
    if done_before and previous.get("pretrain_wall_seconds"):  # read back, not redone
        metrics = json.loads((pre / "metrics.json").read_text())
        steps = metrics.get("steps", steps)
        log(f"pretrained folder finished before: {pre}")
    elif a.cli_defaults:  # the command a user runs, nothing but the corpora given
        cmd = [sys.executable, "-m", "encoder_book.cli", "pretrain", "--corpus"]
        cmd += [corpus, "--task-corpus", str(train_tsv), "--out", str(pre)]
        cmd += ["--resume"] if (pre / "vocab.txt").exists() else ["--overwrite"]
        log("running: " + " ".join(cmd))
        with open(out / "pretrain.log", "a") as f:
            r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
        if r.returncode:
            sys.exit(f"pretrain_study: pretrain failed (exit {r.returncode})")
        metrics = json.loads((pre / "metrics.json").read_text())
        steps = metrics.get("steps", steps)
    else:
        metrics = pretrain(
            corpus,
            pre,
            stages=stages(steps),
            train_config=train_config,
            resume=(pre / "vocab.txt").exists(),
            **common,
        )
    wall = time.perf_counter() - t0
    if done_before and previous.get("pretrain_wall_seconds"):
        wall = previous["pretrain_wall_seconds"]
    log(
        f"pretrained: {steps} steps in {wall / 60:.1f} min wall; "
        + json.dumps(
            {k: v for k, v in metrics.items() if "accuracy" in k or "loss" in k}
        )
    )
    # 3. fine-tuning, pretrained and from scratch, several seeds
    threads = max(1, torch.get_num_threads() // max(1, a.jobs))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    results = {
        "args": vars(a),
        "pretrain": metrics,
        "pretrain_wall_seconds": wall,
        "runs": {},
    }
    kinds = [("pretrained", ["--model", "transformer", "--init", str(pre)])]
    earlier = json.loads(Path(a.arms_from).read_text()) if a.arms_from else {}
    if not a.no_scratch and "scratch" not in earlier.get("sst2_dev", {}):
        kinds.append(("scratch", ["--model", "transformer"]))
    if a.lstm and "lstm" not in earlier.get("sst2_dev", {}):
        kinds.append(("lstm", ["--model", "lstm"]))
    queue = []  # (name, seed, folder, command)
    accs: dict[str, list] = {name: [] for name, _ in kinds}
    seconds: dict[str, list] = {name: [] for name, _ in kinds}

    def record(name: str, seed: int, d: Path, how: str) -> None:
        m = json.loads((d / "metrics.json").read_text())
        accs[name].append(m["dev_accuracy"])
        seconds[name].append(m.get("train_seconds"))
        log(f"{name} seed {seed}: {how} {m['dev_accuracy']:.4f}")

    for name, extra in kinds:
        for seed in a.seeds:
            d = out / f"finetune-{name}-seed{seed}"
            if (d / "metrics.json").is_file() and not (d / "INCOMPLETE").exists():
                record(name, seed, d, "finished before")  # read back, not redone
                continue
            cmd = [sys.executable, "-m", "encoder_book.cli", "finetune"]
            cmd += ["--train", str(train_tsv), "--dev", str(dev_tsv)]
            cmd += ["--out", str(d), "--seed", str(seed)]
            queue.append((name, seed, d, cmd + ["--overwrite", *extra]))
    running: list = []  # (name, seed, folder, process, log file)

    def reap(proc_row) -> None:
        name, seed, d, proc, f = proc_row
        f.close()
        if proc.returncode:
            log(f"{name} seed {seed}: failed (exit {proc.returncode}), see its log")
            return
        record(name, seed, d, "dev accuracy")

    while queue or running:
        while queue and len(running) < max(1, a.jobs):
            name, seed, d, cmd = queue.pop(0)
            f = open(out / f"finetune-{name}-seed{seed}.log", "w")
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
            running.append((name, seed, d, p, f))
        time.sleep(5)
        for row in [r for r in running if r[3].poll() is not None]:
            running.remove(row)
            reap(row)
    for name, _ in kinds:
        results["runs"][name] = {
            "dev_accuracy": accs[name],
            "mean": statistics.mean(accs[name]) if accs[name] else None,
            "std": statistics.stdev(accs[name]) if len(accs[name]) > 1 else None,
            "train_seconds": seconds[name],
        }
    for name in ("scratch", "lstm"):  # independent of the pretrained model
        if name not in results["runs"] and name in earlier.get("sst2_dev", {}):
            if earlier["seeds"] != a.seeds:
                sys.exit(f"pretrain_study: --arms-from has seeds {earlier['seeds']}")
            results["runs"][name] = earlier["sst2_dev"][name]
            results.setdefault("arms_from", {})[name] = earlier["command"]
    if (
        "scratch" in results["runs"]
        and results["runs"]["scratch"]["mean"] is not None
        and results["runs"]["pretrained"]["mean"] is not None
    ):
        results["pretrained_minus_scratch"] = (
            results["runs"]["pretrained"]["mean"] - results["runs"]["scratch"]["mean"]
        )
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if a.summary:
        write_summary(Path(a.summary), results, pre, a)
    log(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
