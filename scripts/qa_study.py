"""Chapter 11's experiment: a span extractor from scratch on SQuAD v1.1's dev file,
trained on four fifths of its articles and scored on the other fifth (no SQuAD train
file here), with the sentence-overlap baseline beside it; the run folder goes under
chapters/runs/ (git-ignored) and --summary writes the JSON the chapter reads back.

    nohup .venv/bin/python scripts/qa_study.py --summary chapters/results/qa.json \\
        > chapters/runs/qa.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "chapters" / "runs" / "qa"))
    p.add_argument("--epochs", type=float, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--init", help="a pretrained folder (else from scratch)")
    p.add_argument("--summary")
    a = p.parse_args()
    os.environ.pop("ENCODER_BOOK_QUICK", None)
    os.environ.setdefault("ENCODER_BOOK_DATA", str(ROOT.parent / "shared" / "data"))
    from encoder_book.core import data_dir
    from encoder_book.qa import (
        read_squad,
        sentence_baseline,
        split_by_article,
        squad_scores,
        train_qa,
    )

    examples = read_squad(data_dir() / "squad" / "dev-v1.1.json")
    train, held = split_by_article(examples)
    runs = []
    for seed in a.seeds:
        d = Path(a.out) / f"{'pretrained' if a.init else 'scratch'}-seed{seed}"
        if (d / "metrics.json").is_file():
            m = json.loads((d / "metrics.json").read_text())
        else:
            t0 = time.perf_counter()
            m = train_qa(
                train,
                held,
                init=a.init,
                epochs=a.epochs,
                out_dir=d,
                seed=seed,
                progress=False,
            )
            m["wall_seconds"] = time.perf_counter() - t0
            (d / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")
        answers = json.loads((d / "answers.json").read_text())
        m["examples"] = [
            {"question": e.question, "gold": e.answers[0], "predicted": answers[e.id]}
            for e in held[:: max(1, len(held) // 8)][:8]
        ]
        print(
            time.strftime("%H:%M:%S"),
            d.name,
            json.dumps(
                {
                    k: m[k]
                    for k in ("dev_exact_match", "dev_f1", "steps", "train_seconds")
                }
            ),
            flush=True,
        )
        runs.append({k: v for k, v in m.items() if k != "init"})
    summary = {
        "command": "scripts/qa_study.py" + (" --init PRETRAINED" if a.init else ""),
        "train_articles": len({e.title for e in train}),
        "held_articles": len({e.title for e in held}),
        "sentence_baseline": squad_scores(sentence_baseline(held), held),
        "runs": runs,
    }
    if a.init:  # what the encoder brought: its pretraining, as metrics.json says
        pre = json.loads((Path(a.init) / "metrics.json").read_text())
        summary["pretraining"] = {
            k: pre.get(k)
            for k in ("corpus", "objective", "steps", "precision", "train_seconds")
        }
        summary["pretraining"]["mask_accuracy"] = pre.get("eval_mask_accuracy")
        summary["pretraining"]["position_embedding_type"] = json.loads(
            (Path(a.init) / "config.json").read_text()
        ).get("position_embedding_type")
    if a.summary:
        Path(a.summary).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
