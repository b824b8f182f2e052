"encoder_book.attention: equivalence with torch, masks in both conventions, empty rows, rotary hook, errors."
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import encoder_book.attention as attention
from encoder_book.attention import (
    MultiHeadAttention,
    merge_heads,
    padding_mask_to_sdpa,
    prepare_attention_mask,
    scaled_dot_product_attention,
    split_heads,
)

HIDDEN, HEADS = 32, 4


@pytest.fixture
def pair():
    "nn.MultiheadAttention and our module with the same weights."
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(HIDDEN, HEADS, batch_first=True)
    return MultiHeadAttention.from_torch(theirs), theirs


PADDING = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]])  # (batch, k_len), 1 = real


def test_by_hand():
    q = k = torch.tensor([[1., 0.], [0., 1.], [1., 1.]])
    v = torch.tensor([[1., 0.], [0., 10.], [5., 5.]])
    out, w = scaled_dot_product_attention(q, k, v)
    expected = torch.softmax(q @ k.T / 2 ** 0.5, -1)
    assert torch.allclose(w, expected) and torch.allclose(out, expected @ v)
    assert torch.allclose(w.sum(-1), torch.ones(3))


@pytest.mark.parametrize("kind", ["none", "bool", "float"])
def test_explicit_matches_torch_sdpa(kind):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    mask = {"none": None, "bool": torch.rand(2, 1, 5, 7) > 0.3, "float": torch.randn(2, 3, 5, 7)}[kind]
    if kind == "bool":
        mask[..., 0] = True                                  # no empty rows: those differ by design on old torch
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6)
    assert w.shape == (2, 3, 5, 7)


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("padding", [None, PADDING])
def test_matches_torch_forward_and_gradients(pair, need_weights, padding):
    ours, theirs = pair
    torch.manual_seed(1)
    x = torch.randn(3, 6, HIDDEN)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn_like(x)
    out1, w1 = ours(x1, attention_mask=padding, need_weights=need_weights)
    out2, w2 = theirs(x2, x2, x2, key_padding_mask=None if padding is None else padding == 0,
                      need_weights=need_weights, average_attn_weights=False)
    assert torch.allclose(out1, out2, atol=1e-5)
    if need_weights:
        assert w1.shape == (3, HEADS, 6, 6) and torch.allclose(w1, w2, atol=1e-5)
    else:
        assert w1 is None
    (out1 * g).sum().backward()
    (out2 * g).sum().backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)
    w_in = torch.cat([ours.query.weight.grad, ours.key.weight.grad, ours.value.weight.grad])
    b_in = torch.cat([ours.query.bias.grad, ours.key.bias.grad, ours.value.bias.grad])
    assert torch.allclose(w_in, theirs.in_proj_weight.grad, atol=1e-5)
    assert torch.allclose(b_in, theirs.in_proj_bias.grad, atol=1e-5)
    assert torch.allclose(ours.out_proj.weight.grad, theirs.out_proj.weight.grad, atol=1e-5)
    assert torch.allclose(ours.out_proj.bias.grad, theirs.out_proj.bias.grad, atol=1e-5)


def test_no_bias_conversion():
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(HIDDEN, HEADS, bias=False, batch_first=True)
    ours = MultiHeadAttention.from_torch(theirs)
    assert ours.query.bias is None
    x = torch.randn(2, 5, HIDDEN)
    assert torch.allclose(ours(x)[0], theirs(x, x, x, need_weights=False)[0], atol=1e-5)


def test_fast_and_explicit_paths_agree():
    torch.manual_seed(0)
    mha = MultiHeadAttention(HIDDEN, HEADS).eval()
    x = torch.randn(3, 6, HIDDEN)
    masks = [None, PADDING, PADDING.bool(), torch.ones(6, 6, dtype=torch.bool).tril()[None, None],
             torch.randn(3, HEADS, 6, 6), torch.zeros(3, 1, 1, 6)]
    for m in masks:
        fast, none = mha(x, attention_mask=m)
        explicit, w = mha(x, attention_mask=m, need_weights=True)
        assert none is None and w.shape == (3, HEADS, 6, 6)
        assert torch.allclose(fast, explicit, atol=1e-5)


def test_mask_conventions():
    "Ours (and SDPA): True = attend. torch's key_padding_mask: True = blocked. The translation is ~mask."
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(HIDDEN, HEADS, batch_first=True)
    ours = MultiHeadAttention.from_torch(theirs)
    x = torch.randn(2, 5, HIDDEN)
    is_real = torch.tensor([[True, True, True, False, False], [True, True, True, True, False]])
    out = ours(x, attention_mask=is_real)[0]
    assert torch.allclose(out, theirs(x, x, x, key_padding_mask=~is_real)[0], atol=1e-5)
    assert not torch.allclose(out, theirs(x, x, x, key_padding_mask=is_real)[0], atol=1e-3)
    # HF integer masks, boolean masks and 4-d masks with the same meaning agree
    as_int = is_real.long()
    assert torch.allclose(out, ours(x, attention_mask=as_int)[0], atol=1e-6)
    assert torch.allclose(out, ours(x, attention_mask=is_real[:, None, None, :])[0], atol=1e-6)
    additive = torch.zeros(2, 1, 1, 5).masked_fill(~is_real[:, None, None, :], float("-inf"))
    assert torch.allclose(out, ours(x, attention_mask=additive)[0], atol=1e-6)


def test_padding_does_not_leak():
    torch.manual_seed(0)
    mha = MultiHeadAttention(HIDDEN, HEADS).eval()
    x = torch.randn(1, 4, HIDDEN)
    padded = torch.cat([x, torch.randn(1, 3, HIDDEN)], 1)
    keep = torch.tensor([[1, 1, 1, 1, 0, 0, 0]])
    for nw in (False, True):
        assert torch.allclose(mha(padded, attention_mask=keep, need_weights=nw)[0][:, :4], mha(x)[0], atol=1e-5)
    w = mha(padded, attention_mask=keep, need_weights=True)[1]
    assert (w[..., 4:] == 0).all()


@pytest.mark.parametrize("safe_sdpa", [True, False])
@pytest.mark.parametrize("need_weights", [False, True])
def test_fully_masked_rows_are_zero_not_nan(monkeypatch, safe_sdpa, need_weights):
    monkeypatch.setattr(attention, "_SDPA_ZEROS_EMPTY_ROWS", safe_sdpa)   # also exercise the guard for old torch
    torch.manual_seed(0)
    mha = MultiHeadAttention(HIDDEN, HEADS)
    x = torch.randn(2, 4, HIDDEN, requires_grad=True)
    keep = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])                    # sentence 1 is all padding
    out, _ = mha(x, attention_mask=keep, need_weights=need_weights)
    assert out.isfinite().all()
    assert torch.allclose(out[1], mha.out_proj.bias.expand(4, -1))      # zero context -> only the output bias
    out.sum().backward()
    assert x.grad.isfinite().all() and all(p.grad.isfinite().all() for p in mha.parameters())


def test_fully_masked_rows_explicit_function():
    q = k = v = torch.randn(1, 1, 3, 4)
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, True]])
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert (w[0, 0, 1] == 0).all() and (out[0, 0, 1] == 0).all() and out.isfinite().all()
    out_f, w_f = scaled_dot_product_attention(q, k, v, torch.zeros(3, 3).masked_fill(~mask, float("-inf")))
    assert torch.allclose(out_f, out) and torch.allclose(w_f, w)


def test_rotary_hook_is_called_on_split_heads():
    calls = []

    class StandIn(nn.Module):
        def forward(self, q, k):
            calls.append((q.shape, k.shape))
            return q * 2, k                                   # any change to q shows in the output

    torch.manual_seed(0)
    plain = MultiHeadAttention(HIDDEN, HEADS).eval()
    rotated = MultiHeadAttention(HIDDEN, HEADS, rotary=StandIn()).eval()
    rotated.load_state_dict(plain.state_dict())
    x = torch.randn(2, 5, HIDDEN)
    for nw in (False, True):
        out = rotated(x, need_weights=nw)[0]
        assert not torch.allclose(out, plain(x)[0], atol=1e-4)
    assert calls == [(torch.Size([2, HEADS, 5, HIDDEN // HEADS]),) * 2] * 2
    # and it is what scaling q by 2 means
    expected, _ = scaled_dot_product_attention(2 * split_heads(plain.query(x), HEADS), split_heads(plain.key(x), HEADS),
                                               split_heads(plain.value(x), HEADS))
    assert torch.allclose(rotated(x)[0], plain.out_proj(merge_heads(expected)), atol=1e-5)


def test_cross_attention():
    torch.manual_seed(0)
    mha = MultiHeadAttention(HIDDEN, HEADS).eval()
    x, memory = torch.randn(2, 3, HIDDEN), torch.randn(2, 8, HIDDEN)
    keep = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    out, w = mha(x, memory, attention_mask=keep, need_weights=True)
    assert out.shape == (2, 3, HIDDEN) and w.shape == (2, HEADS, 3, 8) and (w[1, ..., 5:] == 0).all()
    assert torch.allclose(mha(x, memory, attention_mask=keep)[0], out, atol=1e-5)
    theirs = nn.MultiheadAttention(HIDDEN, HEADS, batch_first=True)
    ours = MultiHeadAttention.from_torch(theirs)
    expected = theirs(x, memory, memory, key_padding_mask=keep == 0, need_weights=False)[0]
    assert torch.allclose(ours(x, memory, attention_mask=keep)[0], expected, atol=1e-5)


def test_split_merge_heads():
    x = torch.randn(2, 3, 12)
    h = split_heads(x, 4)
    assert h.shape == (2, 4, 3, 3) and torch.equal(h[1, 2, 0], x[1, 0, 6:9])
    assert torch.equal(merge_heads(h), x)


def test_mask_helpers():
    m = padding_mask_to_sdpa(torch.tensor([[1, 0], [1, 1]]))
    assert m.shape == (2, 1, 1, 2) and m.dtype == torch.bool and m[0].flatten().tolist() == [True, False]
    assert prepare_attention_mask(None, 2, 4, 3, 3) is None
    assert prepare_attention_mask(torch.zeros(2, 1, 3, 3, dtype=torch.float64), 2, 4, 3, 3).dtype == torch.float32


def test_determinism():
    torch.manual_seed(0)
    mha = MultiHeadAttention(HIDDEN, HEADS, dropout=0.5)
    x = torch.randn(2, 5, HIDDEN)
    mha.eval()
    assert torch.equal(mha(x)[0], mha(x)[0])                                   # no dropout in eval
    mha.train()
    for nw in (False, True):
        torch.manual_seed(3)
        a = mha(x, need_weights=nw)[0]
        torch.manual_seed(3)
        b = mha(x, need_weights=nw)[0]
        torch.manual_seed(4)
        c = mha(x, need_weights=nw)[0]
        assert torch.equal(a, b) and not torch.allclose(a, c)                 # dropout follows the seed


@pytest.mark.parametrize("make, match", [
    (lambda m: MultiHeadAttention(30, 4), "divisible"),
    (lambda m: m(torch.randn(2, 5, 16)), "hidden_size=32"),
    (lambda m: m(torch.randn(HIDDEN)), "hidden_states must have shape"),
    (lambda m: m(torch.randn(5, HIDDEN), torch.randn(2, 5, HIDDEN)), "unbatched"),
    (lambda m: m(torch.randn(2, 5, HIDDEN), torch.randn(2, 5, HIDDEN),
                 value_states=torch.randn(2, 4, HIDDEN)), "same length"),
    (lambda m: m(torch.randn(2, 5, HIDDEN), value_states=torch.randn(2, 5, 8)), "vdim=32"),
    (lambda m: MultiHeadAttention(HIDDEN, HEADS, kdim=-1), "positive"),
    (lambda m: m(torch.randn(2, 5, HIDDEN), torch.randn(3, 5, HIDDEN)), "batch size"),
    (lambda m: m(torch.randn(2, 5, HIDDEN), torch.randn(2, 5, 8)), "key_value_states must have shape"),
    (lambda m: m(torch.randn(2, 5, HIDDEN), attention_mask=torch.ones(2, 6)), "padding mask of shape"),
    (lambda m: m(torch.randn(2, 5, HIDDEN), attention_mask=torch.full((2, 5), -1e9)), "1 for real tokens"),
    (lambda m: m(torch.randn(2, 5, HIDDEN), attention_mask=torch.ones(2, 1, 5, 4, dtype=torch.bool)), "broadcast"),
    (lambda m: m(torch.randn(2, 5, HIDDEN), attention_mask=torch.ones(2, 1, 5, 5, dtype=torch.long)), "boolean"),
    (lambda m: m(torch.randn(2, 5, HIDDEN), attention_mask=torch.ones(5, dtype=torch.bool)), "must be"),
    (lambda m: scaled_dot_product_attention(torch.randn(3, 4), torch.randn(3, 5), torch.randn(3, 5)), "d_k"),
    (lambda m: scaled_dot_product_attention(torch.randn(3, 4), torch.randn(3, 4), torch.randn(2, 4)), "length"),
    (lambda m: scaled_dot_product_attention(torch.randn(4), torch.randn(4), torch.randn(4)), "at least 2"),
    (lambda m: MultiHeadAttention.from_torch(nn.MultiheadAttention(HIDDEN, HEADS, add_zero_attn=True)),
     "add_zero_attn"),
])
def test_bad_input_is_a_clear_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make(MultiHeadAttention(HIDDEN, HEADS))


# what nn.MultiheadAttention accepts that a BERT user needs: kdim/vdim, unbatched input, mixed dtypes


@pytest.mark.parametrize("bias", [True, False])
def test_kdim_vdim_match_torch_forward_and_gradients(bias):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(HIDDEN, HEADS, batch_first=True, kdim=12, vdim=20, bias=bias)
    ours = MultiHeadAttention.from_torch(theirs)
    assert (ours.kdim, ours.vdim) == (12, 20) and ours.key.weight.shape == (HIDDEN, 12)
    x, k, v = torch.randn(3, 6, HIDDEN), torch.randn(3, 9, 12), torch.randn(3, 9, 20)
    keep = torch.ones(3, 9, dtype=torch.long)
    keep[1, 5:] = 0
    keep[2, 2:] = 0
    for need_weights in (False, True):
        ins1 = [t.clone().requires_grad_() for t in (x, k, v)]
        ins2 = [t.clone().requires_grad_() for t in (x, k, v)]
        o1, w1 = ours(ins1[0], ins1[1], keep, need_weights, value_states=ins1[2])
        o2, w2 = theirs(*ins2, key_padding_mask=keep == 0, need_weights=need_weights,
                        average_attn_weights=False)
        assert torch.allclose(o1, o2, atol=1e-6)
        if need_weights:
            assert torch.allclose(w1, w2, atol=1e-6)
        g = torch.randn_like(o1)
        ours.zero_grad()
        theirs.zero_grad()
        (o1 * g).sum().backward()
        (o2 * g).sum().backward()
        for a, b in zip(ins1, ins2):
            assert torch.allclose(a.grad, b.grad, atol=1e-5)
        assert torch.allclose(ours.key.weight.grad, theirs.k_proj_weight.grad, atol=1e-5)
        assert torch.allclose(ours.value.weight.grad, theirs.v_proj_weight.grad, atol=1e-5)
        assert torch.allclose(ours.query.weight.grad, theirs.q_proj_weight.grad, atol=1e-5)


def test_kdim_self_attention_needs_keys_of_that_width():
    mha = MultiHeadAttention(HIDDEN, HEADS, kdim=12, vdim=12)
    with pytest.raises(ValueError, match="kdim=12"):
        mha(torch.randn(2, 5, HIDDEN))                 # keys default to the queries: wrong width
    out, _ = mha(torch.randn(2, 5, HIDDEN), torch.randn(2, 7, 12))   # keys and values alike
    assert out.shape == (2, 5, HIDDEN)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mask", ["none", "padding", "causal"])
def test_unbatched_input_matches_torch(batch_first, mask):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(HIDDEN, HEADS, batch_first=batch_first).eval()
    ours = MultiHeadAttention.from_torch(theirs).eval()
    x = torch.randn(6, HIDDEN)                          # (seq, hidden): no batch axis
    ours_mask = {"none": None, "padding": torch.tensor([1, 1, 1, 1, 0, 0]),
                 "causal": torch.ones(6, 6, dtype=torch.bool).tril()}[mask]
    kw = {"none": {}, "padding": {"key_padding_mask": torch.tensor([0, 0, 0, 0, 1, 1]).bool()},
          "causal": {"attn_mask": ~torch.ones(6, 6, dtype=torch.bool).tril()}}[mask]
    expected, expected_w = theirs(x, x, x, average_attn_weights=False, **kw)
    out, w = ours(x, attention_mask=ours_mask, need_weights=True)
    fast, none = ours(x, attention_mask=ours_mask)
    assert out.shape == (6, HIDDEN) and w.shape == (HEADS, 6, 6) and none is None
    assert torch.allclose(out, expected, atol=1e-6) and torch.allclose(fast, expected, atol=1e-6)
    assert torch.allclose(w, expected_w, atol=1e-6)


def test_unbatched_cross_attention_equals_a_batch_of_one():
    torch.manual_seed(0)
    mha = MultiHeadAttention(HIDDEN, HEADS, kdim=12, vdim=20).eval()
    x, k, v = torch.randn(4, HIDDEN), torch.randn(7, 12), torch.randn(7, 20)
    keep = torch.tensor([1, 1, 1, 1, 1, 0, 0])
    out, w = mha(x, k, keep, True, value_states=v)
    ref, ref_w = mha(x[None], k[None], keep[None], True, value_states=v[None])
    assert torch.equal(out, ref[0]) and torch.equal(w, ref_w[0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_matches_torch(dtype):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(HIDDEN, HEADS, batch_first=True).eval()
    ours = MultiHeadAttention.from_torch(theirs).eval()
    x = torch.randn(2, 6, HIDDEN)
    with torch.autocast("cpu", dtype=dtype):
        o1 = ours(x, attention_mask=PADDING[:2])[0]
        o2 = theirs(x, x, x, key_padding_mask=PADDING[:2] == 0, need_weights=False)[0]
    assert o1.dtype == o2.dtype == dtype
    assert torch.allclose(o1.float(), o2.float(), atol=2e-2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.long, torch.float32, torch.float64])
def test_mask_dtype_need_not_match_the_module(dtype, mask_dtype):
    torch.manual_seed(0)
    ref = MultiHeadAttention(HIDDEN, HEADS).eval()
    mha = MultiHeadAttention(HIDDEN, HEADS).to(dtype).eval()
    mha.load_state_dict({k: v.to(dtype) for k, v in ref.state_dict().items()})
    x = torch.randn(2, 6, HIDDEN)
    keep = PADDING[:2]                                          # (batch, k_len) 1/0
    if mask_dtype.is_floating_point:                            # additive (batch, 1, 1, k_len)
        mask = torch.zeros(2, 1, 1, 6, dtype=mask_dtype).masked_fill(keep[:, None, None] == 0, -1e4)
    else:
        mask = keep.to(mask_dtype)
    expected = ref(x, attention_mask=keep)[0]
    for need_weights in (False, True):
        out = mha(x.to(dtype), attention_mask=mask, need_weights=need_weights)[0]
        assert out.dtype == dtype
        tol = 1e-6 if dtype == torch.float64 else 5e-2
        assert torch.allclose(out.double(), expected.double(), atol=tol)


def test_from_torch_keeps_training_mode_device_and_dtype():
    theirs = nn.MultiheadAttention(HIDDEN, HEADS, batch_first=True).double().eval()
    ours = MultiHeadAttention.from_torch(theirs)
    assert not ours.training and ours.query.weight.dtype == torch.float64


def test_stacked_weights_are_reused_without_gradients_and_follow_changes():
    torch.manual_seed(0)
    mha = MultiHeadAttention(HIDDEN, HEADS).eval()
    x = torch.randn(2, 6, HIDDEN)
    with_grad = mha(x)[0]
    with torch.no_grad():
        first = mha(x)[0]
        stacked = mha._stacked_weights()[0]
        assert mha._stacked_weights()[0] is stacked                  # reused, not recopied
        assert torch.equal(mha(x)[0], first) and torch.equal(first, with_grad)
        mha.key.weight.mul_(2)                                         # in place: version moves
        assert mha._stacked_weights()[0] is not stacked
        assert not torch.allclose(mha(x)[0], first)
        mha.key.weight.div_(2)
    with torch.inference_mode():
        assert torch.equal(mha(x)[0], first)
    opt = torch.optim.SGD(mha.parameters(), lr=0.1)                    # a training step in between
    mha(x)[0].sum().backward()
    opt.step()
    with torch.no_grad():
        assert torch.allclose(mha(x)[0], mha.train(False)(x)[0])
        mha.load_state_dict(MultiHeadAttention(HIDDEN, HEADS).state_dict())
        expected = torch.cat([mha.query.weight, mha.key.weight, mha.value.weight])
        assert torch.equal(mha._stacked_weights()[0], expected)
        mha.value.weight = nn.Parameter(torch.zeros(HIDDEN, HIDDEN))  # replaced
        assert (mha._stacked_weights()[0][2 * HIDDEN:] == 0).all()
    assert "_stacked" not in str(mha.state_dict().keys())
