"benchmarks/gpu_check.py: its plumbing, on the CPU at tiny shapes (the real run needs a GPU)."
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import gpu_check  # noqa: E402

from encoder_book.bert import BertConfig  # noqa: E402


def test_cpu_plumbing_writes_the_report(tmp_path):
    out = tmp_path / "gpu.json"
    r = gpu_check.main(["--device", "cpu", "--quick", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    assert set(r["training"]) == {"fp32", "bf16"}  # no fp16 on a CPU
    for row in r["training"].values():
        assert row["ours"]["finite"] and row["ours"]["ms"] > 0
        if "hf" in row:
            assert row["speed_vs_hf"] > 0
    for row in r["pretraining"].values():
        assert row["tokens_per_second"] > 0 and 0 < row["mfu"] < 1
    assert "skipped" in r["ddp"] and "sdpa_kernels" not in r and "compile" not in r


def test_flops_per_token_counts_the_matrix_multiplies():
    c = BertConfig(vocab_size=10, hidden_size=4, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=8)
    # 6 x (4h^2 + 2hi + h^2 + hV) + 12 L n h, written out for h=4, i=8, V=10, n=5
    assert gpu_check.train_flops_per_token(c, 5) == 6 * (64 + 64 + 16 + 40) + 12 * 5 * 4


def test_refuses_cuda_without_a_gpu(monkeypatch):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA device"):
        gpu_check.main(["--device", "cuda", "--quick", "--out", "/nonexistent/x.json"])
