"""encoder_book.train: config and presets, AdamW groups, schedule, accumulation, early stopping, checkpoints,
bit-identical resume, determinism, saving, and a 2-process DDP run that matches one process."""
import json
import os
import pickle
import runpy
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from encoder_book.data import TokenizedData
from encoder_book.train import (
    PRESETS,
    ModelOutput,
    TrainConfig,
    evaluate,
    fit,
    latest_checkpoint,
    linear_schedule,
    list_checkpoints,
    load_checkpoint,
    make_optimizer,
    param_groups,
    plot_metrics,
    predict,
    read_metrics,
    save_checkpoint,
    save_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_data(n=192, seed=0, vocab=50):
    "Random token sequences of varying length; the label says whether their mean id is above the middle."
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 14, n)
    ids = rng.integers(1, vocab, lengths.sum()).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    labels = np.array([int(ids[a:b].mean() > vocab / 2) for a, b in zip(offsets[:-1], offsets[1:])])
    return TokenizedData(ids, offsets, labels=labels)


class Bag(nn.Module):
    "Mean-pooled embeddings with LayerNorm and (optional) dropout: small, but with everything fit must handle."
    def __init__(self, vocab=50, hidden=16, dropout=0.0):
        super().__init__()
        self.emb = nn.Embedding(vocab, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, 2)

    def forward(self, input_ids, attention_mask, labels=None, **kwargs):
        m = attention_mask[..., None].float()
        logits = self.out(self.drop(self.norm((self.emb(input_ids) * m).sum(1) / m.sum(1))))
        return ModelOutput(None if labels is None else F.cross_entropy(logits, labels), logits)


def make(dropout=0.0, seed=0):
    torch.manual_seed(seed)
    return Bag(dropout=dropout)


def cfg(**kw):
    base = dict(device="cpu", batch_size=16, lr=1e-2, max_steps=20, log_every=1, progress=False, save_every=None)
    return TrainConfig(**{**base, **kw})


TRAIN, DEV = tiny_data(), tiny_data(64, seed=1)


def same_params(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ---------------------------------------------------------------- config, optimizer, schedule

def test_config_presets_and_overrides():
    c = TrainConfig(device="cpu")
    assert (c.preset, c.precision) == ("cpu", "fp32")
    assert (c.batch_size, c.eval_batch_size, c.max_length) == tuple(PRESETS["cpu"][k] for k in
                                                                   ("batch_size", "eval_batch_size", "max_length"))
    g = TrainConfig(device="cpu", preset="gpu", max_length=64)
    assert g.batch_size == PRESETS["gpu"]["batch_size"] and g.max_length == 64
    assert json.loads(json.dumps(c.to_dict()))["lr"] == c.lr
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(device="cpu", precision="fp8")
    with pytest.raises(ValueError, match="multiple of grad_accum"):
        TrainConfig(device="cpu", batch_size=10, grad_accum=4)
    with pytest.raises(ValueError, match="preset"):
        TrainConfig(device="cpu", preset="tpu")


def test_param_groups_no_decay_on_biases_and_layernorm():
    m = Bag()
    m.frozen = nn.Linear(2, 2)
    m.frozen.requires_grad_(False)
    m.tied = m.emb                                       # a shared module is counted once
    groups = param_groups(m, 0.05)
    names = {id(p): n for n, p in m.named_parameters()}
    decay = {names[id(p)] for p in groups[0]["params"]}
    no_decay = {names[id(p)] for p in groups[1]["params"]}
    assert decay == {"emb.weight", "out.weight"} and groups[0]["weight_decay"] == 0.05
    assert no_decay == {"norm.weight", "norm.bias", "out.bias"} and groups[1]["weight_decay"] == 0.0
    opt, _ = make_optimizer(m, cfg(weight_decay=0.05), 10)
    assert isinstance(opt, torch.optim.AdamW) and sum(len(g["params"]) for g in opt.param_groups) == 5


def test_schedule_values():
    assert [linear_schedule(s, 4, 10) for s in range(11)] == [0, .25, .5, .75, 1, 5 / 6, 4 / 6, .5, 2 / 6, 1 / 6, 0]
    assert linear_schedule(0, 0, 10) == 1.0 and linear_schedule(12, 2, 10) == 0.0
    opt, sched = make_optimizer(Bag(), cfg(lr=0.1, warmup_steps=4), 10)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0]); opt.step(); sched.step()
    assert np.allclose(lrs, [0.1 * linear_schedule(s, 4, 10) for s in range(10)])
    transformers = pytest.importorskip("transformers")
    hf = transformers.get_linear_schedule_with_warmup(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1), 7, 50)
    assert [linear_schedule(s, 7, 50) for s in range(60)] == [hf.lr_lambdas[0](s) for s in range(60)]


# ---------------------------------------------------------------- the loop

def test_loss_goes_down_and_outputs_written(tmp_path):
    m = make()
    h = fit(m, TRAIN, DEV, cfg(max_steps=40, eval_every=10), out_dir=tmp_path)
    losses = h.series("loss")[1]
    assert len(losses) == 40 and np.mean(losses[-5:]) < np.mean(losses[:5])
    assert h.series("eval_loss")[0] == [10, 20, 30, 40] and 0 <= h.last("eval_accuracy") <= 1
    assert read_metrics(tmp_path) == h and read_metrics(tmp_path / "metrics.jsonl") == h
    assert json.loads((tmp_path / "train_config.json").read_text())["max_steps"] == 40
    from safetensors.torch import load_model
    again = make(seed=5)
    load_model(again, str(tmp_path / "model.safetensors"))
    assert same_params(again, m)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["Bag"]
    import matplotlib
    matplotlib.use("Agg")
    fig = plot_metrics(tmp_path)
    assert len(fig.axes) == 2


def test_accumulation_equals_full_batch():
    full, acc = make(), make()
    h1 = fit(full, TRAIN, config=cfg(batch_size=32, grad_accum=1, max_steps=3, warmup_steps=0))
    h2 = fit(acc, TRAIN, config=cfg(batch_size=32, grad_accum=2, max_steps=3, warmup_steps=0))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(full.parameters(), acc.parameters()))
    assert np.allclose(h1.series("loss")[1], h2.series("loss")[1], atol=1e-6)


def test_gradient_clipping_bounds_the_step():
    m = make()
    h = fit(m, TRAIN, config=cfg(max_steps=3, max_grad_norm=1e-3, lr=1.0, warmup_steps=0))
    assert all(g > 1e-3 for g in h.series("grad_norm")[1])     # the norm before clipping is what we log
    free = make()
    fit(free, TRAIN, config=cfg(max_steps=1, max_grad_norm=None, warmup_steps=0, lr=0.0))
    assert same_params(free, make())                           # lr 0: nothing moves


def test_early_stopping_and_best_model():
    m = make()
    # learning rate 0: the metric never improves after the first evaluation
    h = fit(m, TRAIN, DEV, cfg(lr=0.0, max_steps=100, eval_every=5, patience=2))
    assert h.stopped_early and h.series("eval_loss")[0] == [5, 10, 15] and h.series("loss")[0][-1] == 15
    m2 = make()
    h2 = fit(m2, TRAIN, DEV, cfg(lr=0.05, max_steps=30, eval_every=5, metric="eval_accuracy", load_best_at_end=True))
    best = h2.best("eval_accuracy")
    assert evaluate(m2, DEV)["accuracy"] == pytest.approx(best["eval_accuracy"])


def test_evaluate_ignores_minus_100_and_predict_keeps_order():
    class Fixed(nn.Module):
        def __init__(self):
            super().__init__(); self.w = nn.Parameter(torch.zeros(1))
        def forward(self, input_ids, attention_mask, labels=None, **kw):
            logits = torch.stack([input_ids.float(), -input_ids.float()], -1) + self.w   # predicts 0 where id > 0
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100) if labels is not None else None
            return ModelOutput(loss, logits)
    d = TokenizedData(np.array([1, 2, 3, 4, 5], dtype=np.int32), np.array([0, 2, 5]),
                      labels=np.array([0, 0]))
    class Tokens(TokenizedData):                       # token-level labels, -100 on padding
        def collate(self, idx):
            b = super().collate(idx)
            b["labels"] = torch.where(b["attention_mask"] == 1, 0, -100)
            b["labels"][0, 0] = 1                      # one wrong prediction out of five real tokens
            return b
    t = Tokens(d.ids, d.offsets, labels=d.labels)
    assert evaluate(Fixed(), t)["accuracy"] == pytest.approx(4 / 5)
    m = make().eval()
    logits = predict(m, DEV, batch_size=16)                # batches sorted by length, rows back in data order
    one_by_one = torch.cat([m(**DEV.collate(np.array([i]))).logits for i in range(len(DEV))])
    assert logits.shape == (len(DEV), 2) and torch.allclose(logits, one_by_one, atol=1e-6)


def test_transform_hook_sees_every_batch():
    seen = []
    def transform(batch):
        seen.append(batch["input_ids"].shape[0]); return batch
    fit(make(), TRAIN, config=cfg(max_steps=4, grad_accum=2), transform=transform)
    assert seen == [8] * 8


def test_eval_transform_is_its_own_hook():
    "Evaluation batches go through eval_transform (default: transform), training ones not."
    seen = []
    hook = lambda kind: lambda batch: (seen.append(kind), batch)[1]
    fit(make(), TRAIN, TRAIN, config=cfg(max_steps=2, eval_every=2),
        transform=hook("train"), eval_transform=hook("eval"))
    assert seen[:2] == ["train", "train"] and set(seen[2:]) == {"eval"}
    seen.clear()
    fit(make(), TRAIN, TRAIN, config=cfg(max_steps=2, eval_every=2), transform=hook("train"))
    assert seen[2:] and set(seen) == {"train"}  # no eval_transform: transform for both


# ---------------------------------------------------------------- checkpoints and resume

def test_checkpoint_roundtrip_and_rotation(tmp_path):
    m = make(dropout=0.1)
    fit(m, TRAIN, config=cfg(max_steps=25, save_every=5, keep_checkpoints=3), out_dir=tmp_path)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-15", "step-20", "step-25"]
    ck = latest_checkpoint(tmp_path)
    assert sorted(p.name for p in ck.iterdir()) == ["model.safetensors", "optimizer.pt", "rng-0.pt", "scheduler.pt",
                                                    "trainer_state.json"]
    fresh = make(seed=9)
    opt, sched = make_optimizer(fresh, cfg(), 25)
    torch.manual_seed(123)
    state = load_checkpoint(ck, fresh, opt, sched)
    assert state["step"] == 25 and same_params(fresh, m) and sched.last_epoch == 25
    assert len(state["history"]) == 25
    # the generators are back where they were when the checkpoint was written
    a = torch.rand(3)
    load_checkpoint(ck, fresh, opt, sched)
    assert torch.equal(a, torch.rand(3))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    m = make()
    opt, sched = make_optimizer(m, cfg(), 10)
    save_checkpoint(tmp_path, m, opt, sched, {"step": 1})
    real_save = torch.save
    def failing(obj, path, *a, **k):
        if str(path).endswith("scheduler.pt"): raise OSError("disk full")
        return real_save(obj, path, *a, **k)
    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, m, opt, sched, {"step": 2})
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-1"]   # no half checkpoint


def test_checkpoint_never_unpickles_code(tmp_path):
    m = make()
    opt, sched = make_optimizer(m, cfg(), 10)
    ck = save_checkpoint(tmp_path, m, opt, sched, {"step": 1})
    torch.save({"state": {}, "param_groups": [], "evil": TrainConfig}, ck / "optimizer.pt")   # a class: code
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(ck, m, opt, sched)


def test_resume_is_bit_identical(tmp_path):
    kw = dict(max_steps=30, eval_every=10, save_every=10)
    straight = make(dropout=0.2)
    h1 = fit(straight, TRAIN, DEV, cfg(**kw), out_dir=tmp_path / "a")
    stopped = make(dropout=0.2)
    fit(stopped, TRAIN, DEV, cfg(stop_after=17, **kw), out_dir=tmp_path / "b")
    assert latest_checkpoint(tmp_path / "b").name == "step-17" and not (tmp_path / "b" / "model.safetensors").exists()
    resumed = make(dropout=0.2, seed=42)                             # weights come from the checkpoint
    h2 = fit(resumed, TRAIN, DEV, cfg(**kw), out_dir=tmp_path / "b", resume=True)
    assert same_params(straight, resumed) and h1 == h2
    assert read_metrics(tmp_path / "a") == read_metrics(tmp_path / "b")
    # a crash after step 17 (its checkpoint lost): resuming from step 10 replays the same steps
    (tmp_path / "c").mkdir()
    stopped = make(dropout=0.2)
    fit(stopped, TRAIN, DEV, cfg(stop_after=17, **kw), out_dir=tmp_path / "c")
    import shutil
    shutil.rmtree(tmp_path / "c" / "checkpoints" / "step-17")
    again = make(dropout=0.2)
    h3 = fit(again, TRAIN, DEV, cfg(**kw), out_dir=tmp_path / "c", resume=True)
    assert same_params(straight, again) and h3 == h1 and read_metrics(tmp_path / "c") == h1


def test_resume_across_epochs_with_accumulation(tmp_path):
    kw = dict(batch_size=32, grad_accum=2, epochs=3, save_every=4, log_every=3)   # 6 steps per epoch
    a = make(dropout=0.1)
    h1 = fit(a, TRAIN, config=cfg(max_steps=None, **kw), out_dir=tmp_path / "a")
    b = make(dropout=0.1)
    fit(b, TRAIN, config=cfg(max_steps=None, stop_after=7, **kw), out_dir=tmp_path / "b")
    h2 = fit(b, TRAIN, config=cfg(max_steps=None, **kw), out_dir=tmp_path / "b", resume=True)
    assert same_params(a, b) and h1 == h2 and h1.series("loss")[0][-1] == 18


def test_same_seed_same_numbers():
    a, b = make(dropout=0.3), make(dropout=0.3)
    assert fit(a, TRAIN, DEV, cfg(eval_every=5)) == fit(b, TRAIN, DEV, cfg(eval_every=5)) and same_params(a, b)
    c = make(dropout=0.3)
    assert fit(c, TRAIN, config=cfg(seed=1)).series("loss") != fit(make(dropout=0.3), TRAIN, config=cfg()).series("loss")


def test_save_model_prefers_save_pretrained(tmp_path):
    class WithOwn(Bag):
        def save_pretrained(self, d):
            (d / "own.txt").write_text("mine")
    save_model(WithOwn(), tmp_path / "own")
    assert (tmp_path / "own" / "own.txt").exists() and not (tmp_path / "own" / "model.safetensors").exists()
    class WithConfig(Bag):
        config = {"hidden_size": 16}
    save_model(WithConfig(), tmp_path / "plain")
    assert json.loads((tmp_path / "plain" / "config.json").read_text()) == {"architectures": ["WithConfig"],
                                                                            "hidden_size": 16}


def test_wrong_inputs_are_clear(tmp_path):
    with pytest.raises(TypeError, match="TokenizedData"):
        fit(make(), ["a text"], config=cfg())
    with pytest.raises(ValueError, match="fewer than one batch"):
        fit(make(), tiny_data(8), config=cfg())
    with pytest.raises(ValueError, match="metric 'eval_f1' is not among"):
        fit(make(), TRAIN, DEV, cfg(eval_every=5, patience=2, metric="eval_f1"))
    fit(make(), TRAIN, config=cfg(max_steps=10, stop_after=5, save_every=5), out_dir=tmp_path)
    with pytest.warns(UserWarning, match="another lr"):
        fit(make(), TRAIN, config=cfg(max_steps=10, save_every=5, lr=0.5), out_dir=tmp_path, resume=True)


# ---------------------------------------------------------------- two processes

DDP_SCRIPT = """
import json, sys
import torch
sys.path.insert(0, {tests!r})
from test_train import TRAIN, cfg, make
from encoder_book.train import fit, dist_info
h = fit(make(), TRAIN, config=cfg(batch_size=16, grad_accum={accum}, max_steps=20, save_every=10, stop_after={stop}),
        out_dir={out!r}, resume={resume})
if dist_info().main:
    print("RESULT " + json.dumps(h.series("loss")[1]))
"""


def torchrun(tmp_path, out, stop=None, resume=False):
    script = tmp_path / f"ddp-{out}-{stop}.py"
    script.write_text(DDP_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)), accum=1,
                                        out=str(tmp_path / out), stop=stop, resume=resume))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r, json.loads(r.stdout.split("RESULT ")[-1].splitlines()[0])


@pytest.mark.slow
def test_two_processes_match_one_and_resume_exactly(tmp_path, capsys):
    tests = os.path.dirname(os.path.abspath(__file__))
    single_script = tmp_path / "single.py"
    single_script.write_text(DDP_SCRIPT.format(tests=tests, accum=2, out=str(tmp_path / "one"), stop=None, resume=False))
    runpy.run_path(str(single_script), run_name="__main__")
    single = json.loads(capsys.readouterr().out.split("RESULT ")[-1])
    r, double = torchrun(tmp_path, "two")                                  # 2 processes x 8 = 2 micro-batches x 8
    assert len(double) == len(single) == 20
    assert max(abs(a - b) for a, b in zip(single, double)) < 1e-4
    # only rank 0 prints and writes the log and the model; each process saves its own random generators
    assert r.stdout.count("RESULT") == 1
    assert read_metrics(tmp_path / "two").series("loss")[1] == double
    assert (tmp_path / "two" / "model.safetensors").exists()
    assert {p.name for p in latest_checkpoint(tmp_path / "two").glob("rng-*")} == {"rng-0.pt", "rng-1.pt"}

    # stopped after step 13 and resumed, two processes end exactly where they would have
    _, first = torchrun(tmp_path, "three", stop=13)
    _, resumed = torchrun(tmp_path, "three", resume=True)
    assert len(first) == 13 and resumed == double
    assert read_metrics(tmp_path / "three") == read_metrics(tmp_path / "two")


# ------------------------------------------------------------ shuffling between epochs

def test_batches_are_shuffled_between_epochs():
    from encoder_book.data import make_batches
    lengths = TRAIN.lengths
    for bucket in (False, True):
        e0 = make_batches(lengths, 16, shuffle=True, bucket=bucket, seed=0, epoch=0)
        e1 = make_batches(lengths, 16, shuffle=True, bucket=bucket, seed=0, epoch=1)
        everything = list(range(len(TRAIN)))
        assert sorted(np.concatenate(e0)) == sorted(np.concatenate(e1)) == everything
        assert [b.tolist() for b in e0] != [b.tolist() for b in e1]  # another order
        sets = [{frozenset(b.tolist()) for b in e} for e in (e0, e1)]
        assert sets[0] != sets[1]  # other batches, not only another order
        again = make_batches(lengths, 16, shuffle=True, bucket=bucket, seed=0, epoch=1)
        assert [b.tolist() for b in again] == [b.tolist() for b in e1]  # (seed, epoch)
    # and fit meets other batches in its second epoch
    seen = []

    def record(batch):
        seen.append(frozenset(map(tuple, batch["input_ids"].tolist())))
        return batch

    per_epoch = len(TRAIN) // 16
    fit(make(), TRAIN, config=cfg(max_steps=2 * per_epoch), transform=record)
    first, second = seen[:per_epoch], seen[per_epoch:]
    assert len(second) == per_epoch and first != second and set(first) != set(second)


# ------------------------------------------------------- explicit learning-rate scales


def test_lr_scales_are_explicit_param_groups():
    m = make()
    groups = param_groups(m, 0.01, {"emb.weight": 0.5, "out.bias": 0.25})
    names = {id(p): n for n, p in m.named_parameters()}
    by_name = {names[id(p)]: g for g in groups for p in g["params"]}
    assert (
        by_name["emb.weight"]["lr_scale"] == 0.5
        and by_name["out.bias"]["lr_scale"] == 0.25
    )
    assert (
        "lr_scale" not in by_name["out.weight"]
        and by_name["out.bias"]["weight_decay"] == 0.0
    )
    opt, _ = make_optimizer(m, cfg(lr=0.1), 10, groups)
    lrs = {names[id(p)]: g["initial_lr"] for g in opt.param_groups for p in g["params"]}
    assert lrs["emb.weight"] == pytest.approx(0.05) and lrs[
        "out.bias"
    ] == pytest.approx(0.025)
    assert lrs["out.weight"] == pytest.approx(0.1)
    assert all("lr" not in g for g in groups)  # the caller's dicts untouched
    with pytest.raises(ValueError, match="emb.wieght"):
        param_groups(m, 0.01, {"emb.wieght": 0.5})
    with pytest.raises(TypeError, match="param_groups"):
        make_optimizer(m, cfg(), 10, [list(m.parameters())])
    # fit takes them: a scale of 0 freezes the embeddings
    m = make()
    emb = m.emb.weight.detach().clone()
    fit(
        m,
        TRAIN,
        config=cfg(max_steps=5),
        param_groups=param_groups(m, 0.01, {"emb.weight": 0.0}),
    )
    assert torch.equal(m.emb.weight, emb) and not torch.equal(
        m.out.weight, make().out.weight
    )


# ---------------------------------------------------------------- fit's named steps


def test_fit_is_its_steps(tmp_path):
    from encoder_book.train import (
        checkpoint_step,
        evaluate_step,
        log_step,
        next_batch,
        setup_run,
        train_step,
    )

    c = cfg(max_steps=12, log_every=4, eval_every=6, save_every=6)
    reference = make()
    h_fit = fit(reference, TRAIN, DEV, c, out_dir=tmp_path / "fit")
    m = make()
    run = setup_run(m, TRAIN, DEV, c, out_dir=tmp_path / "steps")
    assert (run.total, run.step, run.parts) == (12, 0, 1)
    m.train()
    saved = []
    while run.step < run.total:
        lr, norm = train_step(run, next_batch(run))
        log_step(run, lr, norm)
        assert evaluate_step(run) is False
        saved.append(checkpoint_step(run, stop=False))
    assert run.history == h_fit and same_params(m, reference)
    assert [p.name for p in saved if p is not None] == ["step-6", "step-12"]
    assert [r["step"] for r in run.history if "loss" in r] == [4, 8, 12]


def test_evaluate_step_stops_after_patience():
    from encoder_book.train import evaluate_step, setup_run

    run = setup_run(
        make(), TRAIN, DEV, cfg(eval_every=1, patience=2, metric="eval_loss")
    )
    run.state["step"] = 1
    messages = []
    assert evaluate_step(run, messages.append) is False  # first: the best so far
    run.state["best"] = -1.0  # nothing can beat it now
    assert evaluate_step(run, messages.append) is False and run.state["bad_evals"] == 1
    assert evaluate_step(run, messages.append) is True and run.history.stopped_early
    assert messages and "early stop" in messages[0]
