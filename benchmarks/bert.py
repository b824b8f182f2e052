"""Speed of encoder_book's BertModel against transformers' BertModel (SDPA attention) and torch's nn.TransformerEncoder.

Same shape for all three: 4 layers, hidden 256, 4 heads, intermediate 1024, batch 16, length 128, with padding (the
sequences have random lengths between half and all of the length). Ours and HF's share their weights; torch's encoder
has the same layer sizes (post-LN, GELU, batch_first) but no embeddings or pooler. Two measurements on the CPU:

- training step: forward + backward (train mode, dropout 0.1), gradients zeroed before each step;
- inference: forward in eval mode under torch.inference_mode().

Steps are timed side by side, interleaved (the order alternates every repeat), after a warm-up; the table shows the
median and the best time of each, and the ratios to HF's (below 1: faster than HF).

    python benchmarks/bert.py            # the shape above, 15 repeats
    python benchmarks/bert.py --quick    # a few seconds: batch 2, length 32, 3 repeats
"""
import argparse
import statistics
import time

import torch
from torch import nn


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


def models(layers=4, hidden=256, heads=4, intermediate=1024, vocab=30522, seed=0):
    "Ours, HF's (SDPA) with the same weights, and torch's nn.TransformerEncoder of the same layer sizes."
    import transformers
    from encoder_book.bert import BertConfig, BertModel
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=intermediate)
    ours = BertModel(cfg)
    hf = ours.to_hf(attn_implementation="sdpa")
    layer = nn.TransformerEncoderLayer(hidden, heads, intermediate, dropout=0.1, activation="gelu", batch_first=True)
    torch_enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    return ours, hf, torch_enc


def inputs(batch, length, vocab=30522, hidden=256, seed=0):
    "Token ids with padding (random lengths from length/2 to length), the mask, and embeddings for torch's encoder."
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=g)
    lengths[0] = length
    mask = (torch.arange(length)[None] < lengths[:, None]).long()          # (batch, length), 1 = token
    ids = torch.randint(1, vocab, (batch, length), generator=g) * mask       # padding id 0
    x = torch.randn(batch, length, hidden, generator=g)                     # input for nn.TransformerEncoder
    return ids, mask, x


def steps(ours, hf, torch_enc, ids, mask, x, train: bool) -> dict:
    "One training step (forward + backward) or one inference forward of each model."
    for m in (ours, hf, torch_enc):
        m.train(train)
    pad = mask == 0                                                          # torch: True = padding
    if train:
        def run(model, f):
            def step():
                model.zero_grad(set_to_none=True)
                f().sum().backward()
            return step
    else:
        def run(model, f):
            def step():
                with torch.inference_mode():
                    f()
            return step
    return {"ours": run(ours, lambda: ours(ids, mask).last_hidden_state),
            "HF (sdpa)": run(hf, lambda: hf(input_ids=ids, attention_mask=mask).last_hidden_state),
            "nn.TransformerEncoder": run(torch_enc, lambda: torch_enc(x, src_key_padding_mask=pad))}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few seconds: batch 2, length 32, 3 repeats")
    p.add_argument("--batch", type=int, default=None, help="default 16 (2 with --quick)")
    p.add_argument("--length", type=int, default=None, help="default 128 (32 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="default 15 (3 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    args = p.parse_args(argv)
    batch = args.batch or (2 if args.quick else 16)
    length = args.length or (32 if args.quick else 128)
    repeats = args.repeats or (3 if args.quick else 15)
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads; "
          f"4 layers, hidden 256, 4 heads, intermediate 1024, batch {batch}, length {length} (padded); "
          f"{repeats} interleaved repeats")
    ours, hf, torch_enc = models()
    ids, mask, x = inputs(batch, length)
    results = {}
    for what, train in (("forward + backward", True), ("inference", False)):
        t = interleaved(steps(ours, hf, torch_enc, ids, mask, x, train), repeats, warmup=1 if args.quick else 3)
        med = {k: 1e3 * statistics.median(v) for k, v in t.items()}
        best = {k: 1e3 * min(v) for k, v in t.items()}
        print(f"\n{what}")
        print(f"{'':>22} {'median ms':>10} {'best ms':>8} {'median / HF':>12} {'best / HF':>10}")
        for k in t:
            print(f"{k:>22} {med[k]:10.2f} {best[k]:8.2f} {med[k] / med['HF (sdpa)']:12.2f} "
                  f"{best[k] / best['HF (sdpa)']:10.2f}")
        results[what] = {"median_ms": med, "best_ms": best}
    return results


if __name__ == "__main__":
    main()
