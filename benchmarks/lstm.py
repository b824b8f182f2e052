"""Speed of encoder_book's LSTM (a Python loop over time steps) against torch.nn.LSTM (its fused native kernels:
ATen/oneDNN on the CPU, cuDNN on a GPU), on the same weights and input.

Each row times one training step (forward + backward) and one inference pass (forward, no gradients) of a
bidirectional LSTM on a batch shaped like SST-2's. Calls are interleaved (the order alternates every repeat) after a
warm-up; the table shows the median time of each and ours / torch (above 1: ours is slower).

    python benchmarks/lstm.py                    # batch 64, 128 -> 128 x 2 directions, lengths 16, 32, 64
    python benchmarks/lstm.py --quick            # a few seconds: batch 8, lengths 16 and 32, few repeats
    python benchmarks/lstm.py --device cuda      # on a GPU (cuDNN)
"""
import argparse
import statistics
import time

import torch
from torch import nn

from encoder_book.lstm import LSTM


def interleaved(fns: dict, repeats: int, warmup: int, sync=lambda: None) -> dict:
    "Seconds per call of each function (a list per name), timed in alternating order after a warm-up."
    for _ in range(warmup):
        for f in fns.values():
            f()
    sync()
    times = {name: [] for name in fns}
    for i in range(repeats):
        for name in (list(fns) if i % 2 == 0 else list(fns)[::-1]):
            t0 = time.perf_counter()
            fns[name]()
            sync()
            times[name].append(time.perf_counter() - t0)
    return times


def compare(length: int, batch: int, input_size: int, hidden: int, layers: int, bidirectional: bool, repeats: int,
            warmup: int, device: str = "cpu", seed: int = 0) -> dict:
    "Median seconds of a training step and of an inference pass, ours and torch's, same weights and input."
    torch.manual_seed(seed)
    theirs = nn.LSTM(input_size, hidden, layers, bidirectional=bidirectional, batch_first=True).to(device)
    ours = LSTM(input_size, hidden, layers, bidirectional=bidirectional, batch_first=True).to(device)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(batch, length, input_size, device=device, requires_grad=True)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def train_step(model):
        def f():
            model.zero_grad(); x.grad = None
            model(x)[0].sum().backward()
        return f

    def infer(model):
        def f():
            with torch.no_grad():
                model(x)
        return f

    out = {}
    for kind, make in (("train", train_step), ("infer", infer)):
        t = interleaved({"ours": make(ours), "torch": make(theirs)}, repeats, warmup, sync)
        out[kind] = {k: statistics.median(v) for k, v in t.items()}
    return out


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small and fast: batch 8, lengths 16 and 32, 5 repeats")
    p.add_argument("--lengths", type=int, nargs="+", default=None, help="default 16 32 64 (16 32 with --quick)")
    p.add_argument("--batch", type=int, default=None, help="default 64 (8 with --quick)")
    p.add_argument("--input-size", type=int, default=128)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--unidirectional", action="store_true")
    p.add_argument("--repeats", type=int, default=None, help="default 15 (5 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    batch = args.batch or (8 if args.quick else 64)
    repeats = args.repeats or (5 if args.quick else 15)
    lengths = args.lengths or ([16, 32] if args.quick else [16, 32, 64])
    if args.threads:
        torch.set_num_threads(args.threads)
    bi = not args.unidirectional
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads; batch {batch}, "
          f"{args.input_size} -> {args.hidden}{' x 2 directions' if bi else ''}, {args.layers} layer(s); "
          f"median of {repeats} interleaved repeats")
    print(f"{'length':>6} {'train ours ms':>14} {'torch ms':>9} {'ours/torch':>11} {'infer ours ms':>14} "
          f"{'torch ms':>9} {'ours/torch':>11}")
    rows = []
    for length in lengths:
        r = compare(length, batch, args.input_size, args.hidden, args.layers, bi, repeats,
                    warmup=1 if args.quick else 3, device=args.device)
        tr, inf = r["train"], r["infer"]
        rows.append((length, tr["ours"], tr["torch"], inf["ours"], inf["torch"]))
        print(f"{length:6} {1e3 * tr['ours']:14.2f} {1e3 * tr['torch']:9.2f} {tr['ours'] / tr['torch']:11.2f} "
              f"{1e3 * inf['ours']:14.2f} {1e3 * inf['torch']:9.2f} {inf['ours'] / inf['torch']:11.2f}")
    return rows


if __name__ == "__main__":
    main()
