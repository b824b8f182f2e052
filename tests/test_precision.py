"""encoder_book.train: precision="auto" for each kind of device (hardware queries
mocked), the CPU bf16
detection, and the fp16 + GradScaler and bf16 training paths run for real on the CPU."""

import pytest
import torch
from test_train import TRAIN, cfg, make, same_params

import encoder_book.train as train
from encoder_book.train import (
    TrainConfig,
    cpu_has_native_bf16,
    fit,
    list_checkpoints,
    next_batch,
    resolve_precision,
    setup_run,
    train_step,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def hardware(monkeypatch):
    "Set what the GPU and CPU report: hardware(capability=(7, 5), native_bf16=True)."

    def set_(capability=None, native_bf16=False, cpu_auto=True):
        monkeypatch.setattr(train, "cuda_capability", lambda device=None: capability)
        monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: native_bf16)
        monkeypatch.setattr(train, "CPU_BF16_AUTO", cpu_auto)

    return set_


@pytest.mark.parametrize(
    "gpu, capability, expected",
    [
        ("T4", (7, 5), "fp16"),
        ("V100", (7, 0), "fp16"),
        ("P100", (6, 0), "fp16"),
        ("A100", (8, 0), "bf16"),
        ("RTX 3090", (8, 6), "bf16"),
        ("H100", (9, 0), "bf16"),
    ],
)
def test_auto_on_gpus_follows_the_compute_capability(
    hardware, monkeypatch, gpu, capability, expected
):
    hardware(capability=capability)
    # is_bf16_supported() says True on T4/V100 (emulation): it must not be what decides
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda") == expected, gpu
    assert resolve_precision("auto", torch.device("cuda", 0)) == expected


def test_auto_on_cpus(hardware):
    hardware(native_bf16=False, cpu_auto=True)
    assert resolve_precision("auto", "cpu") == "fp32"  # no bf16 in hardware
    hardware(native_bf16=True, cpu_auto=True)
    assert resolve_precision("auto", "cpu") == "bf16"  # native and measured faster
    hardware(native_bf16=True, cpu_auto=False)
    assert resolve_precision("auto", "cpu") == "fp32"  # native, not chosen
    assert resolve_precision("auto", "mps") == "fp32"


def test_explicit_choices_are_kept_and_bad_ones_named(hardware):
    hardware(capability=(7, 5))
    for p in ("fp32", "bf16", "fp16"):
        assert resolve_precision(p, "cuda") == p and resolve_precision(p, "cpu") == p
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("half", "cpu")
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(device="cpu", precision="float16")


def test_train_config_uses_the_decision(hardware):
    hardware(native_bf16=False)
    assert TrainConfig(device="cpu").precision == "fp32"
    hardware(native_bf16=True, cpu_auto=True)
    assert TrainConfig(device="cpu").precision == "bf16"


def test_cpu_bf16_detection_reads_the_flags(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    with_bf16 = tmp_path / "with"
    with_bf16.write_text(
        "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
    )
    amx = tmp_path / "amx"
    amx.write_text("flags\t\t: fpu avx2 amx_tile amx_bf16\n")
    without = tmp_path / "without"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert cpu_has_native_bf16(with_bf16) and cpu_has_native_bf16(amx)
    assert not cpu_has_native_bf16(without)
    assert not cpu_has_native_bf16(tmp_path / "missing")  # not Linux: no flags
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512_BF16")
    assert cpu_has_native_bf16(without)  # torch says so


def test_fp16_with_grad_scaler_trains_on_the_cpu_and_resumes_exactly(tmp_path):
    run = setup_run(make(), TRAIN, config=cfg(precision="fp16"))
    assert isinstance(run.scaler, torch.amp.GradScaler) and run.scaler.is_enabled()
    m = make()
    h = fit(m, TRAIN, config=cfg(precision="fp16", max_steps=30))
    losses = h.series("loss")[1]
    assert all(map(torch.isfinite, map(torch.tensor, losses)))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5  # it learns
    # the scaler is part of the checkpoint, and a stopped fp16 run resumes bit for bit
    c = dict(precision="fp16", max_steps=20, save_every=5)
    straight = make()
    h1 = fit(straight, TRAIN, config=cfg(**c), out_dir=tmp_path / "a")
    fit(make(), TRAIN, config=cfg(**c, stop_after=10), out_dir=tmp_path / "b")
    assert (list_checkpoints(tmp_path / "b")[-1] / "scaler.pt").exists()
    resumed = make()
    h2 = fit(resumed, TRAIN, config=cfg(**c), out_dir=tmp_path / "b", resume=True)
    assert h1 == h2 and same_params(straight, resumed)


@pytest.mark.filterwarnings("ignore:Detected call of")  # the skipped step
def test_fp16_scaler_skips_a_step_whose_gradients_overflow():
    run = setup_run(make(), TRAIN, config=cfg(precision="fp16", warmup_steps=0))
    run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**120)  # fp16 overflows
    before = [p.detach().clone() for p in run.model.parameters()]
    train_step(run, next_batch(run))
    assert run.scaler.get_scale() < 2.0**120  # backed off
    assert all(
        torch.equal(p, b) for p, b in zip(run.model.parameters(), before)
    )  # no step


def test_bf16_autocast_trains_on_the_cpu():
    h = fit(make(), TRAIN, config=cfg(precision="bf16", max_steps=30))
    losses = h.series("loss")[1]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
