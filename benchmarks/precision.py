"""Training in float32 against bfloat16 autocast on this CPU, at the small BERT shape.

The same BertForMaskedLM (4 layers, hidden 256, 4 heads, intermediate 1024, vocabulary
8000), from the same initial weights, trains for the same N AdamW steps on the same
batches of made-up MLM data (a fixed set of batches, cycled, so the loss falls), once
in float32 and once under torch.autocast("cpu", dtype=torch.bfloat16). Printed: training
tokens per second of each (median of the timed steps after a warm-up), the speed ratio
bf16 / fp32, and the MLM loss after N steps of each. Also printed: whether this CPU has
native bfloat16 (AVX512-BF16 or AMX), which is what encoder_book.train.resolve_precision
reads.

    OMP_NUM_THREADS=1 python benchmarks/precision.py     # 40 steps, batch 16 x 128
    python benchmarks/precision.py --steps 10 --batch 4 --length 64   # a quick look
"""

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

from encoder_book.bert import BertConfig, BertForMaskedLM
from encoder_book.train import cpu_has_native_bf16


def make_batches(
    n: int, batch: int, length: int, vocab: int, seed: int = 0
) -> list[dict]:
    "n MLM batches: random token ids, 15% of positions labelled with their own token."
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(5, vocab, (batch, length), generator=g)  # (batch, seq)
        pick = torch.rand(batch, length, generator=g) < 0.15
        labels = torch.where(pick, ids, torch.full_like(ids, -100))
        out.append(
            {
                "input_ids": torch.where(pick, torch.full_like(ids, 4), ids),
                "attention_mask": torch.ones_like(ids),
                "labels": labels,
            }
        )
    return out


def train(precision: str, steps: int, warmup: int, batches: list[dict], seed: int = 0):
    "Train from a fixed initialisation; returns (median seconds per step, last loss)."
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=8000,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BertForMaskedLM(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    times, loss = [], None
    for step in range(warmup + steps):
        batch = batches[step % len(batches)]
        ctx = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if precision == "bf16"
            else nullcontext()
        )
        t0 = time.perf_counter()
        with ctx:
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), loss.item()


def main() -> None:
    "Print fp32 and bf16 tokens/s, their ratio and the losses after N steps."
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=128)
    args = ap.parse_args()
    if min(args.steps, args.batch, args.length) < 1 or args.warmup < 0:
        ap.error(
            "--steps, --batch and --length must be positive, --warmup not negative"
        )
    batches = make_batches(8, args.batch, args.length, 8000)
    tokens = args.batch * args.length
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"native bf16: {cpu_has_native_bf16()}"
    )
    res = {p: train(p, args.steps, args.warmup, batches) for p in ("fp32", "bf16")}
    for p, (sec, loss) in res.items():
        print(
            f"{p}: {tokens / sec:8.0f} tokens/s, loss after {args.warmup + args.steps} "
            f"steps {loss:.4f}"
        )
    ratio = res["fp32"][0] / res["bf16"][0]
    gap = abs(res["bf16"][1] - res["fp32"][1])
    print(f"bf16 / fp32 speed: {ratio:.2f}x; loss difference {gap:.4f}")


if __name__ == "__main__":
    main()
