"""The book's GPU checks in one run: precision, compile, attention kernels, throughput.

On a CUDA machine this script
1. trains our BertForMaskedLM and transformers' (SDPA attention, the same weights) for a
   few steps at BERT-base shape in fp32, fp16 (with a GradScaler) and bf16 (where the
   GPU has it natively), and reports ms per step, the ratio HF time / our time, and
   that every loss is finite;
2. compiles ours with torch.compile(fullgraph=True) and times the compiled step;
3. runs one training step of ours under each SDPA kernel (flash, memory-efficient,
   math), with no padding mask (what flash needs), and says which ran;
4. measures MLM pretraining throughput in bf16 at the small shape (chapter 6) and at
   base shape: tokens per second and model FLOPs utilisation against the measured
   peak of the faster of a bf16 and an fp32 matrix multiply on this device;
5. with two GPUs or more, runs `encoder-book pretrain` under torchrun (NCCL) and in
   one process on a tiny corpus and reports both final losses (each process draws its
   own masks, so they agree closely, not exactly).

Everything goes to a JSON file (default chapters/results/gpu_check.json) that the
book's GPU cells read. Without a GPU, `--device cpu --quick` runs the same plumbing at
tiny shapes on the CPU in seconds (fp32 and bf16 only, no compile), so the script is
tested where CI runs.

    python benchmarks/gpu_check.py                          # on the GPU machine
    python benchmarks/gpu_check.py --device cpu --quick     # the plumbing, on a CPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from encoder_book.bert import BertConfig, BertForMaskedLM
from encoder_book.train import cpu_has_native_bf16, cuda_capability, resolve_precision

ROOT = Path(__file__).resolve().parent.parent
DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def shape(name: str, quick: bool) -> dict:
    "Config keywords of a named shape; `quick` shrinks everything."
    if quick:
        return dict(vocab_size=500, hidden_size=64, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=128)
    if name == "base":
        return dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                    num_attention_heads=12, intermediate_size=3072)
    return dict(vocab_size=8000, hidden_size=256, num_hidden_layers=4,
                num_attention_heads=4, intermediate_size=1024)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batches(n: int, batch: int, length: int, vocab: int, device, seed: int = 0) -> list:
    "n MLM batches of random ids, 15% of positions labelled, no padding."
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(5, vocab, (batch, length), generator=g)
        labels = torch.where(torch.rand(ids.shape, generator=g) < 0.15, ids, -100)
        out.append({"input_ids": ids.to(device), "labels": labels.to(device)})
    return out


def time_training(model, data: list, precision: str, steps: int, warmup: int,
                  device: torch.device, compile: bool = False) -> dict:
    "Median ms per AdamW step of `model` on `data` (cycled), and the last loss."
    model = model.to(device).train()
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    dtype = DTYPES[precision]
    fwd = torch.compile(model, fullgraph=True) if compile else model
    times, loss = [], torch.tensor(float("nan"))
    t_first = time.perf_counter()
    for i in range(warmup + steps):
        b = data[i % len(data)]
        sync(device)
        t0 = time.perf_counter()
        ctx = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
        with ctx:
            loss = fwd(**b).loss
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - t0)
        if i == warmup - 1:
            warm_seconds = time.perf_counter() - t_first  # compile time included
    ms = 1000 * statistics.median(times[warmup:])
    return {"ms": round(ms, 3), "loss": float(loss.item()),
            "finite": bool(math.isfinite(loss.item())),
            "warmup_seconds": round(warm_seconds, 2)}


def precisions_for(device: torch.device, quick: bool) -> list[str]:
    if device.type == "cpu":
        return ["fp32", "bf16"]
    cap = cuda_capability(device)
    return ["fp32", "fp16"] + (["bf16"] if cap is not None and cap >= (8, 0) else [])


def matmul_peak(
    device: torch.device, n: int, repeats: int = 10, dtype=torch.bfloat16
) -> float:
    "Measured matmul FLOP/s in `dtype`: (n, n) @ (n, n), median of `repeats`."
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def train_flops_per_token(c: BertConfig, length: int) -> float:
    """Forward + backward FLOPs per token of BertForMaskedLM: 6 x the weights a token
    meets in matrix multiplies, plus attention's scores and weighted sums."""
    h, i, L = c.hidden_size, c.intermediate_size, c.num_hidden_layers
    weights = L * (4 * h * h + 2 * h * i) + h * h + h * c.vocab_size
    return 6 * weights + 12 * L * length * h


def sdpa_kernels(model, data, device: torch.device, precision: str) -> dict:
    "Which SDPA kernels run one training step of ours (no padding mask)."
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return {"error": "torch.nn.attention.sdpa_kernel needs torch >= 2.3"}
    out = {}
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"):
        try:
            with sdpa_kernel(getattr(SDPBackend, name)):
                r = time_training(model, data, precision, steps=3, warmup=1,
                                  device=device)
            out[name.lower()] = {"ran": True, "ms": r["ms"]}
        except RuntimeError as e:  # the kernel does not support this input
            out[name.lower()] = {"ran": False, "why": str(e).splitlines()[0][:160]}
    return out


def ddp_check(quick: bool) -> dict:
    "encoder-book pretrain on a tiny corpus: torchrun x2 (NCCL) against one process."
    with tempfile.TemporaryDirectory() as tmp:
        common = ["pretrain", "--corpus", "tiny", "--max-steps", "20", "--batch-size",
                  "8", "--vocab-size", "300", "-q", "--overwrite"]
        one = [sys.executable, "-m", "encoder_book.cli", *common, "--out", f"{tmp}/one"]
        two = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "-m", "encoder_book.cli", *common, "--out", f"{tmp}/two"]
        env = {**os.environ, "ENCODER_BOOK_QUICK": "1" if quick else "0"}
        losses = {}
        for name, cmd in (("one_process", one), ("two_processes", two)):
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if r.returncode:
                return {"error": f"{name}: exit {r.returncode}: {r.stderr[-300:]}"}
            losses[name] = json.loads((Path(tmp) / name.split("_")[0] /
                                       "metrics.json").read_text())["final_loss"]
        losses["gap"] = abs(losses["one_process"] - losses["two_processes"])
        return losses


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny shapes, few steps")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20)")
    ap.add_argument("--compile", action="store_true",
                    help="also on a CPU (always on a GPU; minutes on a CPU)")
    default_out = ROOT / "chapters" / "results" / "gpu_check.json"
    ap.add_argument("--out", default=str(default_out))
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here (the plumbing: --device cpu --quick)")
    steps, warmup = a.steps or (3 if a.quick else 20), (1 if a.quick else 5)
    batch, length = (4, 32) if a.quick else (32, 128)
    report: dict = {
        "torch": torch.__version__,
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else platform.processor() or "cpu"),
        "capability": (
            list(cuda_capability(device) or ()) if device.type == "cuda" else []
        ),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "auto_precision": resolve_precision("auto", device),
        "quick": a.quick,
    }
    print(json.dumps(report))

    # 1. training steps, ours against HF, in each precision the device has
    base = BertConfig(**shape("base", a.quick))
    data = batches(4, batch, length, base.vocab_size, device)
    report["training"] = {}
    try:
        import transformers  # noqa: F401
        has_hf = True
    except ImportError:
        has_hf = False
    for p in precisions_for(device, a.quick):
        torch.manual_seed(0)
        ours = BertForMaskedLM(base)
        row = {"ours": time_training(ours, data, p, steps, warmup, device)}
        if has_hf:
            hf = ours.to_hf(attn_implementation="sdpa")
            row["hf"] = time_training(hf, data, p, steps, warmup, device)
            row["speed_vs_hf"] = round(row["hf"]["ms"] / row["ours"]["ms"], 3)
        report["training"][p] = row
        print(p, json.dumps(row))

    # 2. torch.compile, fullgraph
    best = "bf16" if "bf16" in report["training"] and device.type == "cuda" else "fp32"
    if device.type == "cuda" or a.compile:
        torch.manual_seed(0)
        r = time_training(BertForMaskedLM(base), data, best, steps, warmup, device,
                          compile=True)
        r["speed_vs_eager"] = round(report["training"][best]["ours"]["ms"] / r["ms"], 3)
        report["compile"] = {best: r}
        print("compile", json.dumps(r))

    # 3. SDPA kernels
    if device.type == "cuda":
        torch.manual_seed(0)
        report["sdpa_kernels"] = sdpa_kernels(BertForMaskedLM(base), data, device, best)
        print("sdpa", json.dumps(report["sdpa_kernels"]))

    # 4. pretraining throughput and model FLOPs utilisation, bf16
    n = 512 if a.quick or device.type == "cpu" else 8192
    tp = "bf16" if ("bf16" in precisions_for(device, a.quick)) else "fp32"
    # the device's best matmul: a CPU without native bf16 multiplies fp32 faster
    peaks = {"fp32": matmul_peak(device, n, dtype=torch.float32)}
    if tp == "bf16":
        peaks["bf16"] = matmul_peak(device, n, dtype=torch.bfloat16)
    peak = max(peaks.values())
    report["matmul_peak_tflops"] = {k: round(v / 1e12, 3) for k, v in peaks.items()}
    report["pretraining"] = {}
    for name in ("small", "base"):
        c = BertConfig(**shape(name, a.quick))
        pb = (4, 32) if a.quick else ((128, 128) if name == "small" else (32, 128))
        torch.manual_seed(0)
        r = time_training(BertForMaskedLM(c), batches(4, *pb, c.vocab_size, device),
                          tp, steps, warmup, device)
        tokens_per_s = pb[0] * pb[1] / (r["ms"] / 1000)
        mfu = tokens_per_s * train_flops_per_token(c, pb[1]) / peak
        report["pretraining"][name] = {
            "precision": tp, "batch": pb[0], "length": pb[1],
            "tokens_per_second": round(tokens_per_s), "mfu": round(mfu, 4),
            "ms_per_step": r["ms"],
        }
        print("pretraining", name, json.dumps(report["pretraining"][name]))

    # 5. DDP over NCCL
    if device.type == "cuda" and torch.cuda.device_count() >= 2:
        report["ddp"] = ddp_check(a.quick)
    else:
        report["ddp"] = {"skipped": "one device: DDP over NCCL needs two GPUs"}
    print("ddp", json.dumps(report["ddp"]))

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"written: {out}")
    return report


if __name__ == "__main__":
    main()
