"""Speed of encoder_book's MultiHeadAttention against torch.nn.MultiheadAttention.

One training step (forward + backward) on the CPU. Both modules get the same weights and
the same input; torch's is called with need_weights=False (its fastest path). Steps are
timed side by side, interleaved (the order alternates every repeat), after a warm-up, in
one process. The table shows the median and the best time of each and two ratios:
ours/torch time (below 1: ours is faster) and the speed of ours relative to torch's,
torch time / ours time (1.00x or more: ours is at least as fast). The CPU may be shared:
compare medians of interleaved runs, and run with OMP_NUM_THREADS=1 for stable figures.

    python benchmarks/attention.py            # batch 8, hidden 256, 4 heads, L 128 and 512
    python benchmarks/attention.py --quick    # a few seconds: batch 2, fewer repeats
"""
import argparse
import statistics
import time

import torch
from torch import nn

from encoder_book.attention import MultiHeadAttention


def interleaved(fns: dict, repeats: int, warmup: int) -> dict:
    "Seconds per call of each function (a list per name), in alternating order."
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {name: [] for name in fns}
    for i in range(repeats):
        for name in list(fns) if i % 2 == 0 else list(fns)[::-1]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def steps(length: int, batch: int, hidden: int, heads: int, seed: int = 0) -> dict:
    "One training step (forward + backward) of ours and of torch's, same weights and input."
    torch.manual_seed(seed)
    theirs = nn.MultiheadAttention(hidden, heads, batch_first=True)
    ours = MultiHeadAttention.from_torch(theirs)
    x = torch.randn(batch, length, hidden, requires_grad=True)

    def step_ours():
        ours.zero_grad()
        x.grad = None
        ours(x)[0].sum().backward()

    def step_theirs():
        theirs.zero_grad()
        x.grad = None
        theirs(x, x, x, need_weights=False)[0].sum().backward()

    return {"ours": step_ours, "torch": step_theirs}


def main(argv=None) -> list:
    "Run the comparison; returns (length, median ms ours, torch, best ms ours, torch) rows."
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small and fast: batch 2, 5 repeats")
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    p.add_argument("--batch", type=int, default=None, help="default 8 (2 with --quick)")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--repeats", type=int, default=None, help="default 25 (5 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    batch = args.batch or (2 if args.quick else 8)
    repeats = args.repeats or (5 if args.quick else 25)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; forward + backward, "
          f"batch {batch}, hidden {args.hidden}, {args.heads} heads; {repeats} interleaved "
          f"repeats")
    print("torch: nn.MultiheadAttention(batch_first=True), need_weights=False")
    print(f"{'length':>6} {'ours ms':>8} {'torch ms':>9} {'ours/torch':>11} {'speed':>7} "
          f"{'best ours':>10} {'best torch':>11} {'best speed':>11}")
    rows = []
    for length in args.lengths:
        t = interleaved(steps(length, batch, args.hidden, args.heads), repeats,
                        warmup=1 if args.quick else 3)
        med = {k: 1e3 * statistics.median(v) for k, v in t.items()}
        best = {k: 1e3 * min(v) for k, v in t.items()}
        rows.append((length, med["ours"], med["torch"], best["ours"], best["torch"]))
        print(f"{length:6} {med['ours']:8.2f} {med['torch']:9.2f} "
              f"{med['ours'] / med['torch']:11.2f} {med['torch'] / med['ours']:6.2f}x "
              f"{best['ours']:10.2f} {best['torch']:11.2f} "
              f"{best['torch'] / best['ours']:10.2f}x")
    print("speed = torch time / ours time (medians): 1.00x or more means ours is as fast")
    return rows


if __name__ == "__main__":
    main()
