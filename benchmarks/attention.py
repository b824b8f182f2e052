"""Speed of encoder_book's MultiHeadAttention against torch.nn.MultiheadAttention, forward + backward on the CPU.

Both modules get the same weights and the same input; torch's is called with need_weights=False (its fastest path).
Steps are timed side by side, interleaved (the order alternates every repeat), after a warm-up; the table shows the
median and the best time of each, and ours / torch (below 1: ours is faster).

    python benchmarks/attention.py            # batch 8, hidden 256, 4 heads, lengths 128 and 512
    python benchmarks/attention.py --quick    # a few seconds: batch 2, fewer repeats
"""
import argparse
import statistics
import time

import torch
from torch import nn

from encoder_book.attention import MultiHeadAttention


def interleaved(fns: dict, repeats: int, warmup: int) -> dict:
    "Seconds per call of each function (a list per name), timed in alternating order after a warm-up."
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {name: [] for name in fns}
    for i in range(repeats):
        for name in (list(fns) if i % 2 == 0 else list(fns)[::-1]):
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def compare(length: int, batch: int, hidden: int, heads: int, repeats: int, warmup: int, seed: int = 0) -> dict:
    "Times of one training step (forward + backward) of ours and of torch's, same weights and input."
    torch.manual_seed(seed)
    theirs = nn.MultiheadAttention(hidden, heads, batch_first=True)
    ours = MultiHeadAttention.from_torch(theirs)
    x = torch.randn(batch, length, hidden, requires_grad=True)

    def step_ours():
        ours.zero_grad(); x.grad = None
        ours(x)[0].sum().backward()

    def step_theirs():
        theirs.zero_grad(); x.grad = None
        theirs(x, x, x, need_weights=False)[0].sum().backward()

    return interleaved({"ours": step_ours, "torch": step_theirs}, repeats, warmup)


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small and fast: batch 2, 5 repeats")
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    p.add_argument("--batch", type=int, default=None, help="default 8 (2 with --quick)")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--repeats", type=int, default=None, help="default 25 (5 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    args = p.parse_args(argv)
    batch = args.batch or (2 if args.quick else 8)
    repeats = args.repeats or (5 if args.quick else 25)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; forward + backward, batch {batch}, "
          f"hidden {args.hidden}, {args.heads} heads; torch: nn.MultiheadAttention(batch_first=True), "
          f"need_weights=False; {repeats} interleaved repeats")
    print(f"{'length':>6} {'ours ms':>9} {'torch ms':>9} {'ours/torch':>11} {'ours best':>10} {'torch best':>11} "
          f"{'best ratio':>11}")
    rows = []
    for length in args.lengths:
        t = compare(length, batch, args.hidden, args.heads, repeats, warmup=1 if args.quick else 3)
        med = {k: 1e3 * statistics.median(v) for k, v in t.items()}
        best = {k: 1e3 * min(v) for k, v in t.items()}
        rows.append((length, med["ours"], med["torch"], best["ours"], best["torch"]))
        print(f"{length:6} {med['ours']:9.2f} {med['torch']:9.2f} {med['ours'] / med['torch']:11.2f} "
              f"{best['ours']:10.2f} {best['torch']:11.2f} {best['ours'] / best['torch']:11.2f}")
    return rows


if __name__ == "__main__":
    main()
