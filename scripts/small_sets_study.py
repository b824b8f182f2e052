"""The command line's defaults on two small labelled sets, for chapter 7b.

Two sets a user might bring, built from the data folder:
- questions: the 10,570 questions of SQuAD v1.1 dev, each labelled with the title of
  its article (48 string labels); a stratified fifth of every article's questions is
  the test split (2,095), the rest trains (8,475);
- sst2-2k: 2,000 sentences drawn from SST-2's training file (seed 0), tested on the
  full SST-2 dev set (872).
Each is trained with `encoder-book finetune` and nothing but --train, --dev, --model
(bow, lstm, transformer) and --seed; the test split is only measured. Results go to
chapters/results/small_sets.json (no machine paths), which chapter 7b reads back.

    .venv/bin/python scripts/small_sets_study.py --jobs 2     # about 20 min on 2 cores
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("bow", "lstm", "transformer")


def build_sets(data: Path, out: Path) -> dict:
    "Write the two sets as CSV/TSV files under `out`; their sizes."
    sizes = {}
    squad = json.loads((data / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    by_title = defaultdict(list)
    for article in squad["data"]:
        for p in article["paragraphs"]:
            for q in p["qas"]:
                by_title[article["title"]].append(q["question"].strip())
    train, test = [], []
    for title in sorted(by_title):
        qs = by_title[title][:]
        random.Random(title).shuffle(qs)
        k = len(qs) // 5
        test += [(q, title) for q in qs[:k]]
        train += [(q, title) for q in qs[k:]]
    random.Random(0).shuffle(train)
    d = out / "questions"
    d.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.csv", train), ("test.csv", test)):
        with open(d / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(rows)
    sizes["questions"] = {"train": len(train), "test": len(test),
                          "classes": len(by_title)}
    lines = (data / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()
    picked = random.Random(0).sample(lines[1:], 2000)
    d = out / "sst2-2k"
    d.mkdir(parents=True, exist_ok=True)
    text = "\n".join([lines[0], *picked]) + "\n"
    (d / "train.tsv").write_text(text, encoding="utf-8")
    dev = (data / "sst2" / "dev.tsv").read_text(encoding="utf-8")
    (d / "test.tsv").write_text(dev, encoding="utf-8")
    sizes["sst2-2k"] = {"train": 2000, "test": len(dev.splitlines()) - 1, "classes": 2}
    return sizes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get(
        "ENCODER_BOOK_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--out", default=str(ROOT / "chapters" / "runs" / "small_sets"))
    p.add_argument("--summary", default=str(ROOT / "chapters" / "results" /
                                            "small_sets.json"))
    p.add_argument("--jobs", type=int, default=1, help="runs at once (1 thread each)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    out = Path(a.out)
    sizes = build_sets(Path(a.data), out)
    queue = []
    for name in sizes:
        ext = "csv" if name == "questions" else "tsv"
        for model in MODELS:
            folder = out / name / f"{model}-seed{a.seed}"
            cmd = [sys.executable, "-m", "encoder_book.cli", "finetune",
                   "--train", str(out / name / f"train.{ext}"),
                   "--dev", str(out / name / f"test.{ext}"),
                   "--model", model, "--seed", str(a.seed), "--out", str(folder),
                   "--overwrite", "-q"]
            queue.append((name, model, folder, cmd))
    env = {**os.environ, "OMP_NUM_THREADS": "1" if a.jobs > 1 else
           os.environ.get("OMP_NUM_THREADS", "2")}
    env.pop("ENCODER_BOOK_QUICK", None)
    results: dict = {n: {"sizes": s, "models": {}} for n, s in sizes.items()}
    running: list = []
    while queue or running:
        while queue and len(running) < a.jobs:
            name, model, folder, cmd = queue.pop(0)
            running.append((name, model, folder, time.time(),
                            subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE, text=True)))
        time.sleep(1)
        for row in running[:]:
            name, model, folder, t0, proc = row
            if proc.poll() is None:
                continue
            running.remove(row)
            if proc.returncode:
                err = proc.stderr.read()[-400:]
                print(f"{name} {model}: exit {proc.returncode}: {err}")
                return 1
            m = json.loads((folder / "metrics.json").read_text())
            keep = ("dev_accuracy", "dev_macro_f1", "steps", "best_step", "epochs",
                    "lr", "batch_size", "train_seconds", "params")
            results[name]["models"][model] = {k: m.get(k) for k in keep}
            results[name]["models"][model]["wall_seconds"] = round(time.time() - t0, 1)
            print(f"{name} {model}: {m['dev_accuracy']:.4f}", flush=True)
    summary = {"command": "scripts/small_sets_study.py", "seed": a.seed,
               "threads_per_run": int(env["OMP_NUM_THREADS"]), "sets": results}
    Path(a.summary).parent.mkdir(parents=True, exist_ok=True)
    Path(a.summary).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"summary: {a.summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
