"""encoder_book.lstm: the cell's equations, parity with torch.nn.LSTM (state dicts both ways, outputs, states,
gradients), padding, errors, the classifier, and train/save/load through train_classifier("lstm") on the tiny data."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import (
    PackedSequence,
    pack_padded_sequence,
    pack_sequence,
    pad_packed_sequence,
)

from encoder_book.data import LabelledData, load_labelled
from encoder_book.finetuning import train_classifier
from encoder_book.lstm import (
    LSTM,
    POOLINGS,
    LSTMCell,
    LSTMClassifier,
    LSTMClassifierConfig,
    load_lstm_classifier,
    lstm_update,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    "Tokenized data is cached on disk: keep this module's cache out of the user's."
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENCODER_BOOK_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def err(a, b):
    return (a - b).abs().max().item()


# ---------------------------------------------------------------- the cell

def test_cell_equations_concatenated_form_and_nn_lstmcell():
    torch.manual_seed(0)
    d, n, batch = 3, 5, 4
    W = {k: torch.randn(n, n + d) for k in "ifgo"}
    b = {k: torch.randn(n) for k in "ifgo"}
    x, h, c = torch.randn(batch, d), torch.randn(batch, n), torch.randn(batch, n)
    hx = torch.cat([h, x], -1)
    gate = lambda k, act: act(hx @ W[k].T + b[k])
    c_ref = gate("f", torch.sigmoid) * c + gate("i", torch.sigmoid) * gate("g", torch.tanh)
    h_ref = gate("o", torch.sigmoid) * torch.tanh(c_ref)

    ours = LSTMCell(d, n)
    with torch.no_grad():
        ours.weight_ih.copy_(torch.cat([W[k][:, n:] for k in "ifgo"]))
        ours.weight_hh.copy_(torch.cat([W[k][:, :n] for k in "ifgo"]))
        ours.bias_ih.copy_(torch.cat([b[k] for k in "ifgo"]))
        ours.bias_hh.zero_()
    h1, c1 = ours(x, (h, c))
    assert err(h1, h_ref) < 1e-6 and err(c1, c_ref) < 1e-6
    theirs = nn.LSTMCell(d, n)
    theirs.load_state_dict(ours.state_dict())
    h2, c2 = theirs(x, (h, c))
    assert err(h1, h2) < 1e-6 and err(c1, c2) < 1e-6
    assert err(ours(x)[0], theirs(x)[0]) < 1e-6                  # zero initial state
    # lstm_update on its own: gates in the order i, f, g, o
    gates = torch.randn(batch, 4 * n)
    i, f, g, o = gates.split(n, -1)
    hu, cu = lstm_update(gates, c)
    assert err(cu, f.sigmoid() * c + i.sigmoid() * g.tanh()) < 1e-6 and err(hu, o.sigmoid() * cu.tanh()) < 1e-6


def test_cell_without_bias():
    cell = LSTMCell(3, 4, bias=False)
    assert cell.bias_ih is None and [n for n, _ in cell.named_parameters()] == ["weight_ih", "weight_hh"]
    theirs = nn.LSTMCell(3, 4, bias=False)
    theirs.load_state_dict(cell.state_dict())
    x = torch.randn(2, 3)
    assert err(cell(x)[0], theirs(x)[0]) < 1e-6


# ---------------------------------------------------------------- parity with nn.LSTM

@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
def test_parity_with_nn_lstm(num_layers, bidirectional, batch_first):
    torch.manual_seed(0)
    ours = LSTM(6, 7, num_layers, bidirectional=bidirectional, batch_first=batch_first)
    torch.manual_seed(0)
    theirs = nn.LSTM(6, 7, num_layers, bidirectional=bidirectional, batch_first=batch_first)
    # same names, shapes, order, and (same seed) the same initial values
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in theirs.state_dict().items()]
    assert all(torch.equal(p, q) for p, q in zip(ours.parameters(), theirs.parameters()))
    torch.manual_seed(1)
    theirs = nn.LSTM(6, 7, num_layers, bidirectional=bidirectional, batch_first=batch_first)
    ours.load_state_dict(theirs.state_dict())                    # torch -> ours
    again = nn.LSTM(6, 7, num_layers, bidirectional=bidirectional, batch_first=batch_first)
    again.load_state_dict(ours.state_dict())                     # ours -> torch
    assert all(torch.equal(p, q) for p, q in zip(again.parameters(), theirs.parameters()))

    x = torch.randn((3, 5, 6) if batch_first else (5, 3, 6))
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    h0 = torch.randn(num_layers * (2 if bidirectional else 1), 3, 7)
    c0 = torch.randn_like(h0)
    o1, (h1, c1) = ours(x1, (h0, c0))
    o2, (h2, c2) = theirs(x2, (h0, c0))
    assert o1.shape == o2.shape and h1.shape == h2.shape and c1.shape == c2.shape
    assert max(err(o1, o2), err(h1, h2), err(c1, c2)) < 1e-5
    (o1.sin().sum() + h1.sum() + (c1 ** 2).sum()).backward()
    (o2.sin().sum() + h2.sum() + (c2 ** 2).sum()).backward()
    assert err(x1.grad, x2.grad) < 1e-5
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert err(p.grad, q.grad) < 1e-5, name
    # no initial state: zeros, as nn.LSTM
    assert err(ours(x)[0], theirs(x)[0]) < 1e-5


def test_dropout_only_between_layers_and_only_in_training():
    torch.manual_seed(0)
    theirs = nn.LSTM(4, 5, 2, dropout=0.5, batch_first=True)
    ours = LSTM(4, 5, 2, dropout=0.5, batch_first=True)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 6, 4)
    assert not torch.equal(ours(x)[0], ours(x)[0])
    ours.eval(); theirs.eval()
    assert torch.equal(ours(x)[0], ours(x)[0]) and err(ours(x)[0], theirs(x)[0]) < 1e-6
    one = LSTM(4, 5, 1, dropout=0.5, batch_first=True)                          # nothing between layers to drop
    assert torch.equal(one(x)[0], one(x)[0])


# ---------------------------------------------------------------- padding

@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_matches_pack_padded_sequence(bidirectional):
    torch.manual_seed(0)
    theirs = nn.LSTM(4, 6, 2, bidirectional=bidirectional, batch_first=True)
    ours = LSTM(4, 6, 2, bidirectional=bidirectional, batch_first=True)
    ours.load_state_dict(theirs.state_dict())
    lengths = torch.tensor([2, 6, 1, 4])
    x = torch.randn(4, 6, 4)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    o1, (h1, c1) = ours(x1, lengths=lengths)
    o2, (h2, c2) = theirs(pack_padded_sequence(x2, lengths, batch_first=True, enforce_sorted=False))
    o2, _ = pad_packed_sequence(o2, batch_first=True, total_length=6)
    assert max(err(o1, o2), err(h1, h2), err(c1, c2)) < 1e-5
    (o1.sum() + h1.sum() + c1.sum()).backward()
    (o2.sum() + h2.sum() + c2.sum()).backward()
    assert err(x1.grad, x2.grad) < 1e-5
    assert all(err(p.grad, q.grad) < 1e-5 for p, q in zip(ours.parameters(), theirs.parameters()))
    real = torch.arange(6)[None] < lengths[:, None]
    assert (o1[~real] == 0).all() and (x1.grad[~real] == 0).all()   # padding neither shows nor learns
    # other padding values, and an attention mask instead of lengths: the same result
    y = torch.where(real[..., None], x, torch.full_like(x, 1e3))
    o3, (h3, c3) = ours(y, attention_mask=real.long())
    assert max(err(o3, o1), err(h3, h1), err(c3, c1)) < 1e-6
    # each sentence alone, unpadded: the same final states
    for k, n in enumerate(lengths.tolist()):
        _, (hk, ck) = ours(x[k:k + 1, :n])
        assert err(hk[:, 0], h1[:, k]) < 1e-6 and err(ck[:, 0], c1[:, k]) < 1e-6


def test_left_padding_with_a_mask_and_batch_second():
    torch.manual_seed(0)
    ours = LSTM(3, 4, bidirectional=True, batch_first=False)
    x = torch.randn(5, 2, 3)                                     # (seq, batch, features)
    lengths = torch.tensor([5, 3])
    _, (h_right, _) = ours(x, lengths=lengths)
    left = torch.zeros_like(x)
    left[:, 0] = x[:, 0]
    left[2:, 1] = x[:3, 1]
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])     # (batch, seq), whatever the layout
    _, (h_left, _) = ours(left, attention_mask=mask)
    assert err(h_left, h_right) < 1e-6


def test_zero_length_keeps_the_initial_state():
    ours = LSTM(3, 4, batch_first=True)
    h0, c0 = torch.randn(1, 2, 4), torch.randn(1, 2, 4)
    out, (h, c) = ours(torch.randn(2, 3, 3), (h0, c0), lengths=[0, 3])
    assert torch.equal(h[:, 0], h0[:, 0]) and torch.equal(c[:, 0], c0[:, 0]) and (out[0] == 0).all()


# ------------------------------------------------------- nn.LSTM's signature and inputs


def test_signature_and_defaults_are_nn_lstm_s():
    import inspect

    ours = inspect.signature(LSTM.__init__).parameters
    theirs = [
        "input_size",
        "hidden_size",
        "num_layers",
        "bias",
        "batch_first",
        "dropout",
        "bidirectional",
        "proj_size",
        "device",
        "dtype",
    ]
    assert list(ours)[1:] == theirs
    lstm = LSTM(3, 4)
    ref = nn.LSTM(3, 4)
    for name in (
        "num_layers",
        "bias",
        "batch_first",
        "dropout",
        "bidirectional",
        "proj_size",
    ):
        assert getattr(lstm, name) == getattr(ref, name), name
    assert lstm.batch_first is False


def test_positional_arguments_mean_what_they_mean_in_nn_lstm():
    # (input, hidden, num_layers, bias, batch_first, dropout, bidirectional)
    torch.manual_seed(0)
    theirs = nn.LSTM(3, 4, 2, False, True, 0.0, True)
    ours = LSTM(3, 4, 2, False, True, 0.0, True)
    assert [k for k in ours.state_dict()] == [k for k in theirs.state_dict()]
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 5, 3)
    assert err(ours(x)[0], theirs(x)[0]) < 1e-6


def test_default_layout_is_seq_first_like_nn_lstm():
    torch.manual_seed(0)
    theirs = nn.LSTM(3, 4)
    ours = LSTM(3, 4)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 2, 3)  # (seq, batch, features)
    (o1, (h1, c1)), (o2, (h2, c2)) = ours(x), theirs(x)
    assert max(err(o1, o2), err(h1, h2), err(c1, c2)) < 1e-6
    bf = LSTM(3, 4, batch_first=True)
    bf.load_state_dict(theirs.state_dict())
    assert err(bf(x.transpose(0, 1))[0].transpose(0, 1), o2) < 1e-6


def test_device_and_dtype_arguments():
    lstm = LSTM(3, 4, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in lstm.parameters())
    out, _ = lstm(torch.randn(5, 2, 3, dtype=torch.float64))
    assert out.dtype == torch.float64


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_input_like_nn_lstm(num_layers, bidirectional, batch_first):
    torch.manual_seed(0)
    theirs = nn.LSTM(
        3, 4, num_layers, bidirectional=bidirectional, batch_first=batch_first
    )
    ours = LSTM(3, 4, num_layers, bidirectional=bidirectional, batch_first=batch_first)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(6, 3)  # (seq, features)
    D = 2 if bidirectional else 1
    h0 = torch.randn(num_layers * D, 4)
    c0 = torch.randn_like(h0)
    for hx in (None, (h0, c0)):
        (o1, (h1, c1)), (o2, (h2, c2)) = ours(x, hx), theirs(x, hx)
        assert o1.shape == o2.shape == (6, D * 4) and h1.shape == h2.shape == (
            num_layers * D,
            4,
        )
        assert max(err(o1, o2), err(h1, h2), err(c1, c2)) < 1e-5
    with pytest.raises(ValueError, match="unbatched"):
        ours(x, (h0[:, None], c0[:, None]))


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_packed_sequence_like_nn_lstm(num_layers, bidirectional, enforce_sorted):
    torch.manual_seed(0)
    theirs = nn.LSTM(3, 5, num_layers, bidirectional=bidirectional, batch_first=True)
    ours = LSTM(3, 5, num_layers, bidirectional=bidirectional, batch_first=True)
    ours.load_state_dict(theirs.state_dict())
    lengths = [6, 4, 4, 1] if enforce_sorted else [2, 6, 1, 4]
    seqs = [torch.randn(n, 3) for n in lengths]
    D = 2 if bidirectional else 1
    h0 = torch.randn(num_layers * D, 4, 5)
    c0 = torch.randn_like(h0)
    for hx in (None, (h0, c0)):
        packed = pack_sequence(
            [s.clone().requires_grad_() for s in seqs], enforce_sorted=enforce_sorted
        )
        p1, (h1, c1) = ours(packed, hx)
        p2, (h2, c2) = theirs(packed, hx)
        assert isinstance(p1, PackedSequence)
        assert torch.equal(p1.batch_sizes, p2.batch_sizes)
        for a, b in (
            (p1.sorted_indices, p2.sorted_indices),
            (p1.unsorted_indices, p2.unsorted_indices),
        ):
            assert (a is None and b is None) or torch.equal(a, b)
        assert max(err(p1.data, p2.data), err(h1, h2), err(c1, c2)) < 1e-5
        # gradients through the packed data and every parameter
        ours.zero_grad()
        theirs.zero_grad()
        x1 = packed.data.detach().clone().requires_grad_()
        x2 = packed.data.detach().clone().requires_grad_()
        args = (packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        q1, (g1, _) = ours(PackedSequence(x1, *args), hx)
        q2, (g2, _) = theirs(PackedSequence(x2, *args), hx)
        (q1.data.sin().sum() + g1.sum()).backward()
        (q2.data.sin().sum() + g2.sum()).backward()
        assert err(x1.grad, x2.grad) < 1e-5
        assert all(
            err(p.grad, q.grad) < 1e-5
            for p, q in zip(ours.parameters(), theirs.parameters())
        )
    # padded back, the outputs equal those from lengths on the padded batch
    padded, lens = pad_packed_sequence(p1, batch_first=True)
    x = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    o3, _ = ours(x, (h0, c0), lengths=lens)
    assert err(padded, o3) < 1e-6
    with pytest.raises(ValueError, match="PackedSequence"):
        ours(packed, lengths=lens)


def test_dropout_in_eval_with_initial_states_matches_nn_lstm():
    torch.manual_seed(0)
    theirs = nn.LSTM(3, 4, 3, dropout=0.4, bidirectional=True).eval()
    ours = LSTM(3, 4, 3, dropout=0.4, bidirectional=True).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(7, 2, 3)
    h0, c0 = torch.randn(6, 2, 4), torch.randn(6, 2, 4)
    (o1, (h1, c1)), (o2, (h2, c2)) = ours(x, (h0, c0)), theirs(x, (h0, c0))
    assert max(err(o1, o2), err(h1, h2), err(c1, c2)) < 1e-5


def test_repr_like_nn_lstm():
    args = dict(num_layers=2, batch_first=True, dropout=0.1, bidirectional=True)
    assert repr(LSTM(3, 4, **args)) == repr(nn.LSTM(3, 4, **args))
    assert repr(LSTM(3, 4)) == repr(nn.LSTM(3, 4))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="proj_size"):
        LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="hidden_size"):
        LSTM(3, 0)
    with pytest.raises(ValueError, match="num_layers"):
        LSTM(3, 4, num_layers=0)
    with pytest.raises(TypeError, match="PackedSequence"):
        LSTM(3, 4)([[1.0, 2.0, 3.0]])


# ---------------------------------------------------------------- errors


def test_clear_errors_for_bad_input():
    lstm = LSTM(8, 4, batch_first=True)
    with pytest.raises(ValueError, match="3-D input"):
        lstm(torch.randn(8))
    with pytest.raises(ValueError, match="3-D input"):
        lstm(torch.randn(1, 2, 5, 8))
    with pytest.raises(ValueError, match="input_size is 8"):
        lstm(torch.randn(2, 5, 9))
    with pytest.raises(ValueError, match="lengths"):
        lstm(torch.randn(2, 5, 8), lengths=[5, 6])
    with pytest.raises(ValueError, match="one entry per sequence"):
        lstm(torch.randn(2, 5, 8), lengths=[5])
    with pytest.raises(ValueError, match="attention_mask"):
        lstm(torch.randn(2, 5, 8), attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="not both"):
        lstm(torch.randn(2, 5, 8), lengths=[5, 5], attention_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="h_0 and c_0"):
        lstm(torch.randn(2, 5, 8), (torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)))
    with pytest.raises(ValueError, match="LSTMCell expects"):
        LSTMCell(8, 4)(torch.randn(2, 7))
    with pytest.raises(ValueError):
        LSTM(8, 4, dropout=1.5)
    with pytest.raises(ValueError):
        LSTM(0, 4)
    with pytest.raises(ValueError, match="pooling"):
        LSTMClassifier(10, pooling="sum")
    with pytest.raises(ValueError, match="impl"):
        LSTMClassifier(10, impl="cudnn")
    with pytest.raises(ValueError, match="input_ids"):
        LSTMClassifier(10)(torch.tensor([1, 2, 3]))


# ---------------------------------------------------------------- the classifier


def tiny_batch():
    return {
        "input_ids": torch.tensor([[2, 5, 6, 7, 3], [2, 8, 3, 0, 0], [2, 9, 4, 3, 0]]),
        "attention_mask": torch.tensor(
            [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]
        ),
        "token_type_ids": torch.zeros(3, 5, dtype=torch.long),
        "labels": torch.tensor([0, 1, 2]),
    }


@pytest.mark.parametrize("pooling", POOLINGS)
def test_classifier_forward_backward_and_both_impls(pooling):
    torch.manual_seed(0)
    model = LSTMClassifier(
        12, num_labels=3, embedding_size=8, hidden_size=5, pooling=pooling
    )
    batch = tiny_batch()
    out = model(**batch)  # token_type_ids accepted, ignored
    assert out.logits.shape == (3, 3) and out.loss.ndim == 0
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, batch["labels"]))
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert (
        model.embeddings.weight.grad[0].abs().sum() == 0
    )  # the padding vector is never updated
    assert model(batch["input_ids"]).loss is None
    model.eval()
    ours = LSTMClassifier(
        12, num_labels=3, embedding_size=8, hidden_size=5, pooling=pooling, impl="ours"
    ).eval()
    ours.load_state_dict(model.state_dict())
    assert isinstance(ours.lstm, LSTM) and isinstance(model.lstm, nn.LSTM)
    assert err(ours(**batch).logits, model(**batch).logits) < 1e-5
    # padding does not change a sentence's logits; no mask given: padding found from the pad id
    for m in (model, ours):
        alone = m(batch["input_ids"][1:2, :3]).logits
        assert err(alone, m(**batch).logits[1:2]) < 1e-5
        assert err(m(batch["input_ids"]).logits, m(**batch).logits) < 1e-6


def test_classifier_two_layers_unidirectional():
    model = LSTMClassifier(
        12,
        num_labels=2,
        embedding_size=8,
        hidden_size=5,
        num_layers=2,
        bidirectional=False,
        pooling="final",
    )
    assert model.classifier.in_features == 5
    assert model(
        **{**tiny_batch(), "labels": torch.tensor([0, 1, 1])}
    ).logits.shape == (3, 2)


# ---------------------------------------------------------------- training, saving, loading


def train_lstm(train, dev, out, seed=0, **kw):
    "The package's pipeline for the LSTM (train_classifier, kind 'lstm'), saved in out."
    kw = {"epochs": 4, "lr": 1e-2, "batch_size": 32, **kw}
    metrics = train_classifier(
        "lstm", train, dev, out_dir=out, seed=seed, device="cpu", progress=False, **kw
    )
    model, _ = load_lstm_classifier(out)
    return model, metrics


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("lstm")
    train, dev = load_labelled("tiny", "train"), load_labelled("tiny", "dev")
    model, metrics = train_lstm(train, dev, out)
    return out, train, dev, model, metrics


def test_train_classifier_lstm_learns_the_tiny_task(trained):
    out, train, dev, model, metrics = trained
    assert metrics["dev_accuracy"] > 0.9  # chance is 0.5
    for key in ("dev_accuracy", "train_seconds", "params", "steps"):
        assert key in metrics
    assert metrics["params"] == sum(p.numel() for p in model.parameters())
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "vocab.txt", "metrics.json"} <= names
    assert (
        json.loads((out / "metrics.json").read_text())["dev_accuracy"]
        == metrics["dev_accuracy"]
    )
    assert isinstance(model, LSTMClassifier)


def test_save_load_round_trip(trained):
    out, train, dev, model, metrics = trained
    for impl in (None, "ours"):
        loaded, tok = load_lstm_classifier(out, impl=impl)
        assert loaded.config.impl == (impl or "torch")
        enc = tok(dev.texts[:16], padding=True, truncation=True, return_tensors="pt")
        model.eval()
        loaded.eval()
        a = model(enc["input_ids"], enc["attention_mask"]).logits
        b = loaded(enc["input_ids"], enc["attention_mask"]).logits
        assert err(a, b) < 1e-5
    assert (
        LSTMClassifierConfig(
            **{
                k: v
                for k, v in json.loads((out / "config.json").read_text()).items()
                if k != "architectures"
            }
        )
        == model.config
    )
    with pytest.raises(FileNotFoundError):
        LSTMClassifier.from_pretrained(out / "nothing-here")


def test_training_is_deterministic(trained, tmp_path):
    out, train, dev, model, metrics = trained
    again, m2 = train_lstm(train, dev, tmp_path / "again")
    assert all(
        torch.equal(p, q)
        for p, q in zip(model.state_dict().values(), again.state_dict().values())
    )
    assert m2["dev_accuracy"] == metrics["dev_accuracy"]


def test_string_labels_and_more_than_two_classes(tmp_path):
    base = load_labelled("tiny", "train")
    labels = [2 if "honestly" in t else y for t, y in zip(base.texts, base.labels)]
    names = ["negative", "positive", "honest"]
    train = LabelledData(base.texts[:600], labels[:600], names)
    dev = LabelledData(base.texts[600:700], labels[600:700], names)
    model, metrics = train_lstm(train, dev, tmp_path, seed=1, epochs=1)
    assert metrics["num_labels"] == 3 and model.classifier.out_features == 3
    assert model.config.id2label == {0: "negative", 1: "positive", 2: "honest"}


def test_train_rejects_empty_data(tmp_path):
    with pytest.raises(ValueError):
        train_lstm(LabelledData([], []), load_labelled("tiny", "dev"), tmp_path)


def test_the_lstm_module_holds_models_only():
    "The model file does not import the training engine (the pipeline is chapter 7's)."
    import encoder_book.lstm as lstm_module

    source = open(lstm_module.__file__, encoding="utf-8").read()
    assert "from .train import" not in source and "encoder_book.train" not in source
    assert not hasattr(lstm_module, "train_lstm_classifier")


def test_from_pretrained_returns_a_model_in_eval_mode(tmp_path):
    torch.manual_seed(0)
    model = LSTMClassifier(
        20, num_labels=3, embedding_size=8, hidden_size=6, dropout=0.5
    )
    model.train().save_pretrained(tmp_path / "m")
    for impl in (None, "ours"):
        loaded = LSTMClassifier.from_pretrained(tmp_path / "m", impl=impl)
        assert not loaded.training and not any(m.training for m in loaded.modules())
        ids = tiny_batch()["input_ids"]
        assert torch.equal(loaded(ids).logits, loaded(ids).logits)  # no dropout
