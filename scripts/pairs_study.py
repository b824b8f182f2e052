"""Chapter 10's experiment: `encoder-book finetune --task pair` with its defaults on MRPC
and RTE, for several seeds, from scratch (transformer and LSTM) and from a pretrained
encoder (`encoder-book pretrain` on WikiText-2, for --pretrain-steps); MRPC's models are
also measured on its labelled test file. Logs and run folders under chapters/runs/
(git-ignored); --summary writes the compact JSON the chapter reads back.

    nohup .venv/bin/python scripts/pairs_study.py --summary chapters/results/pairs.json \\
        > chapters/runs/pairs.log 2>&1 &

Finished runs are read back, not redone, so a stopped study goes on where it was.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKS = {
    "mrpc": ("mrpc/train.tsv", "mrpc/dev.tsv", "mrpc/msr_paraphrase_test.txt"),
    "rte": ("rte/train.tsv", "rte/dev.tsv", None),
}


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "chapters" / "runs" / "pairs"))
    p.add_argument(
        "--data",
        default=os.environ.get(
            "ENCODER_BOOK_DATA", str(ROOT.parent / "shared" / "data")
        ),
    )
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--arms",
        nargs="+",
        default=["scratch", "lstm", "pretrained"],
        choices=["scratch", "lstm", "pretrained", "pretrained-sop"],
        help="pretrained-sop: pretrained with MLM and sentence order (--objective "
        "mlm+sop), as many steps as the MLM-only encoder",
    )
    p.add_argument("--pretrain-steps", type=int, default=1500)
    p.add_argument("--jobs", type=int, default=2, help="fine-tunes at once")
    p.add_argument(
        "--threads", type=int, help="threads per run (default: the cores / --jobs)"
    )
    p.add_argument("--summary", help="the compact JSON of the results (no paths)")
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the summary's results for the tasks and arms this run leaves out",
    )
    p.add_argument(
        "--no-run",
        action="store_true",
        help="start nothing: summarise the runs that have finished",
    )
    return p.parse_args()


def merged(old: dict, new: dict) -> dict:
    """`new`, plus the results of `old` for the (task, arm) pairs `new` does not have."""
    out = {**old, **{k: v for k, v in new.items() if v is not None}}
    if old.get("pretrain") and new.get("pretrain"):
        # the fine-tunes already summarised started from the old run: keep its record
        out["pretrain"] = old["pretrain"]
        a, b = (r["pretrain"]["eval_masked_accuracy"] for r in (old, new))
        if a != b:
            log(f"warning: pretraining gave masked accuracy {b}, the summary has {a}")
    out["threads_per_job"] = {
        t: old.get("threads_per_job") for t in old.get("results", {})
    } | {t: new["threads_per_job"] for t in new["results"]}
    results = {t: dict(arms) for t, arms in old.get("results", {}).items()}
    for task, arms in new["results"].items():
        results.setdefault(task, {}).update(arms)
    out["results"] = results
    out["runs_finished"] = {
        t: {arm: len(v) for arm, v in arms.items()} for t, arms in results.items()
    }
    segments = {**(old.get("segment_embeddings") or {})}
    segments.update(
        {k: v for k, v in (new.get("segment_embeddings") or {}).items() if v}
    )
    out["segment_embeddings"] = segments or None
    return out


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "encoder_book.cli", *map(str, args)]


def pretrained_encoder(a, pre: Path, flags: list[str], env: dict) -> dict:
    """`encoder-book pretrain` on WikiText-2 for --pretrain-steps into `pre` (read back
    when it has finished before), and the summary's record of it."""
    if a.no_run and not (pre / "metrics.json").is_file():
        sys.exit(f"pairs_study: --no-run, and {pre.name} is not there")
    if not (pre / "metrics.json").is_file() or (pre / "INCOMPLETE").exists():
        cmd = cli("pretrain", "--corpus", "wikitext-2", "--out", pre, "-q", *flags)
        cmd += ["--max-steps", str(a.pretrain_steps)]
        cmd += ["--resume"] if (pre / "vocab.txt").exists() else ["--overwrite"]
        log("running: " + " ".join(cmd[2:]))
        t0 = time.perf_counter()
        with open(pre.parent / f"{pre.name}.log", "a") as f:
            r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        if r.returncode:
            sys.exit(f"pairs_study: pretrain failed (exit {r.returncode})")
        (pre.parent / f"{pre.name}_wall.json").write_text(
            json.dumps({"wall_seconds": time.perf_counter() - t0})
        )
    m = json.loads((pre / "metrics.json").read_text())
    wall = pre.parent / f"{pre.name}_wall.json"
    keys = ("steps", "train_seconds", "precision", "threads", "params")
    rec = {k: m.get(k) for k in keys}
    rec["stages"] = [
        {"steps": s["steps"], "block_size": s["block_size"]} for s in m["stages"]
    ]
    rec["eval_masked_accuracy"] = m.get("eval_mask_accuracy")
    if "eval_sop_accuracy" in m:
        rec["eval_sop_accuracy"] = m["eval_sop_accuracy"]
    rec["wall_seconds"] = (
        json.loads(wall.read_text())["wall_seconds"] if wall.is_file() else None
    )
    log(f"{pre.name}: {rec}")
    return rec


def main() -> int:
    a = parse()
    out, data = Path(a.out), Path(a.data)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ENCODER_BOOK_DATA": str(data)}
    env.pop("ENCODER_BOOK_QUICK", None)
    threads = a.threads or max(1, (os.cpu_count() or 2) // max(1, a.jobs))
    env["OMP_NUM_THREADS"] = str(threads)
    pre, pre_sop = out / "pretrained", out / "pretrained-sop"
    pretrain = sop = None
    if "pretrained" in a.arms:
        pretrain = pretrained_encoder(a, pre, [], env)
    if "pretrained-sop" in a.arms:
        sop = pretrained_encoder(a, pre_sop, ["--objective", "mlm+sop"], env)
    extra = {
        "scratch": ["--model", "transformer"],
        "lstm": ["--model", "lstm"],
        "pretrained": ["--model", "transformer", "--init", pre],
        "pretrained-sop": ["--model", "transformer", "--init", pre_sop],
    }
    queue, runs = [], []
    for task in a.tasks:
        train, dev, test = TASKS[task]
        for arm in a.arms:
            for seed in a.seeds:
                d = out / f"{task}-{arm}-seed{seed}"
                done = (d / "metrics.json").is_file() and not (
                    d / "INCOMPLETE"
                ).exists()
                if done or not a.no_run:
                    runs.append((task, arm, seed, d, test))
                if done or a.no_run:
                    continue
                cmd = cli(
                    "finetune",
                    "-q",
                    "--task",
                    "pair",
                    "--train",
                    data / train,
                    "--dev",
                    data / dev,
                    "--out",
                    d,
                    "--seed",
                    seed,
                    "--overwrite",
                    *extra[arm],
                )
                queue.append((d, cmd))
    job_env = env
    running: list = []
    while queue or running:
        while queue and len(running) < max(1, a.jobs):
            d, cmd = queue.pop(0)
            log(f"start {d.name}")
            f = open(out / f"{d.name}.log", "w")
            running.append(
                (d, subprocess.Popen(cmd, stdout=f, stderr=f, env=job_env), f)
            )
        time.sleep(5)
        for row in [r for r in running if r[1].poll() is not None]:
            running.remove(row)
            row[2].close()
            log(f"{row[0].name}: exit {row[1].returncode}")
    results: dict = {}
    for task, arm, seed, d, test in runs:
        m = json.loads((d / "metrics.json").read_text())
        rec = {
            "seed": seed,
            "dev_accuracy": m["dev_accuracy"],
            "dev_f1": m["dev_f1"],
            "train_seconds": m["train_seconds"],
            "steps": m["steps"],
            "best_step": m["best_step"],
            "epochs": m["epochs"],
            "max_length": m["max_length"],
        }
        if test is not None:
            save = d / "test.json"
            if not save.is_file():
                r = subprocess.run(
                    cli(
                        "evaluate",
                        "-q",
                        "--model",
                        d,
                        "--data",
                        data / test,
                        "--save",
                        save,
                    ),
                    capture_output=True,
                    text=True,
                    env=env,
                )
                if r.returncode:
                    sys.exit(f"pairs_study: evaluate {d.name} failed: {r.stderr}")
            e = json.loads(save.read_text())
            positive = e["labels"][1]
            rec["test_accuracy"] = e["accuracy"]
            rec["test_f1"] = e["per_class"][positive]["f1"]
        results.setdefault(task, {}).setdefault(arm, []).append(rec)
        log(
            f"{task} {arm} seed {seed}: "
            + json.dumps(
                {
                    k: round(v, 4)
                    for k, v in rec.items()
                    if k.endswith(("accuracy", "f1"))
                }
            )
        )
    for task, arms in results.items():
        for arm, recs in arms.items():
            for key in ("dev_accuracy", "dev_f1", "test_accuracy", "test_f1"):
                vals = [r[key] for r in recs if key in r]
                if len(vals) > 1:
                    log(
                        f"{task} {arm} {key}: {statistics.mean(vals):.4f} "
                        f"+- {statistics.stdev(vals):.4f}"
                    )
    segments = None  # token-type rows: what pretraining left, what fine-tuning moved
    if pretrain is not None:
        from safetensors.torch import load_file

        key = "bert.embeddings.token_type_embeddings.weight"
        start = load_file(str(pre / "model.safetensors"))[key]
        segments = {"pretrained_row_norms": [float(r.norm()) for r in start]}
        # the same rows as pretraining drew them (seed 0, before any step)
        from encoder_book.bert import BertConfig
        from encoder_book.core import set_seed
        from encoder_book.pretraining import SparseBertForMaskedLM

        set_seed(0)
        init = SparseBertForMaskedLM(BertConfig.from_pretrained(pre))
        drawn = init.state_dict()[key]
        segments["initial_row_norms"] = [float(r.norm()) for r in drawn]
        segments["pretraining_moved"] = [float(r.norm()) for r in start - drawn]
        segments["hidden_size"] = int(start.shape[1])
        for task in a.tasks:
            moved = []
            for seed in a.seeds:
                f = out / f"{task}-pretrained-seed{seed}" / "model.safetensors"
                if not f.is_file():
                    continue
                w = load_file(str(f))
                moved.append([float(r.norm()) for r in w[key] - start])
            segments[f"{task}_fine_tuning_moved"] = moved
        log(f"segments: {segments}")
    summary = {
        "command": "scripts/pairs_study.py"
        + (f" --pretrain-steps {a.pretrain_steps}" if pretrain else ""),
        "seeds": a.seeds,
        "runs_finished": {
            t: {arm: len(v) for arm, v in arms.items()} for t, arms in results.items()
        },
        "pretrain": pretrain,
        "pretrain_sop": sop,
        "results": results,
        "segment_embeddings": segments,
        "threads_per_job": threads,
    }
    if a.merge and a.summary and Path(a.summary).is_file():
        summary = merged(json.loads(Path(a.summary).read_text()), summary)
    (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    if a.summary:
        Path(a.summary).parent.mkdir(parents=True, exist_ok=True)
        Path(a.summary).write_text(json.dumps(summary, indent=1) + "\n")
        log(f"summary: {a.summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
