"""Training tokens/s of the pretraining model, fp32 against bf16 autocast, MLM and
ELECTRA, with the matmul peak of this machine for an MFU estimate. On a shared CPU the
figures are noisy: run it on an idle machine and read the ratios, not the absolutes.

    .venv/bin/python scripts/throughput.py --threads 2 --steps 10
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from encoder_book.pretraining import (
    ElectraPretrainer,
    SparseBertForMaskedLM,
    small_config,
)


def matmul_peak(dtype: torch.dtype, n: int = 1024, repeats: int = 10) -> float:
    "Best-of-N FLOP/s of an n x n matmul in `dtype`."
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def step_rate(objective: str, precision: str, args) -> dict:
    "Median tokens/s over `steps` training steps (forward, backward, AdamW)."
    torch.manual_seed(0)
    cfg = small_config(
        args.vocab,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.hidden // 64,
        intermediate_size=4 * args.hidden,
    )
    model = (
        ElectraPretrainer(cfg) if objective == "electra" else SparseBertForMaskedLM(cfg)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(5, args.vocab, (args.batch, args.block))  # (batch, seq)
    labels = torch.where(torch.rand(ids.shape) < 0.15, ids, -100)
    ctx = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bf16"
        else torch.autocast("cpu", enabled=False)
    )
    times = []
    for i in range(args.steps + 1):
        t = time.perf_counter()
        with ctx:
            loss = model(ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i:
            times.append(time.perf_counter() - t)
    times.sort()
    sec = times[len(times) // 2]
    n = sum(p.numel() for p in model.parameters())
    tps = args.batch * args.block / sec
    return {
        "objective": objective,
        "precision": precision,
        "params": n,
        "tokens_per_second": tps,
        "flops_per_second": 6 * n * tps,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=8000)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    rows = []
    for objective in ("mlm", "electra"):
        for precision in ("fp32", "bf16"):
            r = step_rate(objective, precision, args)
            r["mfu_vs_measured_matmul_peak"] = r["flops_per_second"] / peak[precision]
            rows.append(r)
            print(
                f"{objective:8s}{precision:5s} "
                f"{r['tokens_per_second']:9,.0f} tokens/s  "
                f"{r['flops_per_second'] / 1e9:6.1f} GFLOP/s (6N)  "
                f"MFU {r['mfu_vs_measured_matmul_peak']:.0%}",
                flush=True,
            )
    print(json.dumps({"threads": args.threads, "matmul_peak": peak, "rows": rows}))


if __name__ == "__main__":
    main()
