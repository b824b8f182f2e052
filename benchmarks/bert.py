"""Speed of encoder_book's BertModel against transformers' BertModel (SDPA attention).

Two shapes: the book's small BERT (4 layers, hidden 256, 4 heads, intermediate 1024) and
BERT-base (12 layers, hidden 768, 12 heads, intermediate 3072), both with learned
positions and a 30522-token vocabulary, on a padded batch (the sequences have random
lengths between half and all of the length). Ours and HF's share their weights;
torch's nn.TransformerEncoder of the same layer sizes (post-LN, GELU, batch_first, no
embeddings or pooler) is timed alongside for reference. Two measurements on the CPU:

- training step: forward + backward (train mode, dropout 0.1), gradients zeroed first;
- inference: forward in eval mode under torch.inference_mode().

Steps are timed side by side, interleaved (the order alternates every repeat), after a
warm-up, in one process. The tables show the median and best time of each model, the time
ratio to HF's (below 1: faster than HF) and the speed relative to HF's, HF time / time
(1.00x or more: at least as fast as HF). The CPU may be shared with other work: compare
medians of interleaved runs, and run with OMP_NUM_THREADS=1 for stable figures.

    python benchmarks/bert.py                  # both shapes
    python benchmarks/bert.py --shapes small   # small: batch 16, length 128, 15 repeats
    python benchmarks/bert.py --quick          # a few seconds: batch 2, length 32, 3 repeats
"""
import argparse
import statistics
import time

import torch
from torch import nn

SHAPES = {  # layers, hidden, heads, intermediate; default batch, length, repeats
    "small": dict(layers=4, hidden=256, heads=4, intermediate=1024, batch=16, length=128,
                  repeats=15),
    "base": dict(layers=12, hidden=768, heads=12, intermediate=3072, batch=4, length=128,
                 repeats=7),
}


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


def models(layers=4, hidden=256, heads=4, intermediate=1024, vocab=30522, seed=0):
    "Ours, HF's (SDPA) with the same weights, and torch's encoder of the same layer sizes."
    from encoder_book.bert import BertConfig, BertModel
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=intermediate)
    ours = BertModel(cfg)
    hf = ours.to_hf(attn_implementation="sdpa")
    layer = nn.TransformerEncoderLayer(hidden, heads, intermediate, dropout=0.1,
                                       activation="gelu", batch_first=True)
    torch_enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    return ours, hf, torch_enc


def inputs(batch, length, vocab=30522, hidden=256, seed=0):
    "Token ids with padding (lengths from length/2 to length), the mask, and embeddings."
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=g)
    lengths[0] = length
    mask = (torch.arange(length)[None] < lengths[:, None]).long()    # (batch, length), 1 = token
    ids = torch.randint(1, vocab, (batch, length), generator=g) * mask  # padding id 0
    x = torch.randn(batch, length, hidden, generator=g)              # for nn.TransformerEncoder
    return ids, mask, x


def steps(ours, hf, torch_enc, ids, mask, x, train: bool) -> dict:
    "One training step (forward + backward) or one inference forward of each model."
    for m in (ours, hf, torch_enc):
        m.train(train)
    pad = mask == 0                                                  # torch: True = padding

    def run(model, f):
        def step():
            if train:
                model.zero_grad(set_to_none=True)
                f().sum().backward()
            else:
                with torch.inference_mode():
                    f()
        return step

    return {"ours": run(ours, lambda: ours(ids, mask).last_hidden_state),
            "HF (sdpa)": run(hf, lambda: hf(input_ids=ids, attention_mask=mask)
                             .last_hidden_state),
            "nn.TransformerEncoder": run(torch_enc,
                                         lambda: torch_enc(x, src_key_padding_mask=pad))}


def main(argv=None) -> dict:
    "Run the comparison; returns {(shape, what): {'median_ms': ..., 'best_ms': ...}}."
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="batch 2, length 32, 3 repeats")
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    p.add_argument("--batch", type=int, default=None, help="default: the shape's")
    p.add_argument("--length", type=int, default=None, help="default 128 (32 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="default: the shape's")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.get_num_threads()} threads")
    results = {}
    for shape in args.shapes:
        s = SHAPES[shape]
        batch = args.batch or (2 if args.quick else s["batch"])
        length = args.length or (32 if args.quick else s["length"])
        repeats = args.repeats or (3 if args.quick else s["repeats"])
        print(f"\n{shape}: {s['layers']} layers, hidden {s['hidden']}, {s['heads']} heads, "
              f"intermediate {s['intermediate']}, batch {batch}, length {length} (padded); "
              f"{repeats} interleaved repeats")
        ours, hf, torch_enc = models(s["layers"], s["hidden"], s["heads"], s["intermediate"])
        ids, mask, x = inputs(batch, length, hidden=s["hidden"])
        for what, train in (("forward + backward", True), ("inference", False)):
            t = interleaved(steps(ours, hf, torch_enc, ids, mask, x, train), repeats,
                            warmup=1 if args.quick else 2)
            med = {k: 1e3 * statistics.median(v) for k, v in t.items()}
            best = {k: 1e3 * min(v) for k, v in t.items()}
            hf_med, hf_best = med["HF (sdpa)"], best["HF (sdpa)"]
            print(f"{shape}, {what}")
            print(f"{'':>22} {'median ms':>10} {'best ms':>9} {'time / HF':>10} "
                  f"{'speed vs HF':>12} {'best speed':>11}")
            for k in t:
                print(f"{k:>22} {med[k]:10.2f} {best[k]:9.2f} {med[k] / hf_med:10.2f} "
                      f"{hf_med / med[k]:11.2f}x {hf_best / best[k]:10.2f}x")
            results[shape, what] = {"median_ms": med, "best_ms": best}
    print("\nspeed vs HF = HF time / time (medians): 1.00x or more means as fast as HF")
    return results


if __name__ == "__main__":
    main()
