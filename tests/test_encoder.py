"encoder_book.encoder: GELU, feed-forward, post-LN and pre-LN layers and stacks, equal to torch.nn's encoder."
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from encoder_book.encoder import (
    ACTIVATIONS,
    Encoder,
    EncoderLayer,
    FeedForward,
    gelu,
    gelu_tanh,
    get_activation,
)
from encoder_book.positional import RotaryEmbedding

HIDDEN, HEADS = 32, 4


@pytest.fixture
def batch():
    torch.manual_seed(0)
    x = torch.randn(3, 7, HIDDEN)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    return x, mask


def test_gelu_formulas():
    x = torch.linspace(-8, 8, 10001, dtype=torch.float64)
    assert torch.allclose(gelu(x), F.gelu(x), atol=1e-12)
    assert torch.allclose(gelu_tanh(x), F.gelu(x, approximate="tanh"), atol=1e-12)
    gap = (gelu(x) - gelu_tanh(x)).abs().max()
    assert 1e-5 < gap < 1e-3                       # close, but not the same function


def test_activation_names_match_hf():
    transformers = pytest.importorskip("transformers")
    x = torch.randn(1000)
    for name, f in ACTIVATIONS.items():
        assert torch.allclose(f(x), transformers.activations.ACT2FN[name](x), atol=1e-6), name
    with pytest.raises(ValueError, match="unknown activation"):
        get_activation("gelu2")


def test_feed_forward_is_position_wise():
    torch.manual_seed(0)
    ffn = FeedForward(16, 64)
    h = torch.randn(2, 5, 16)
    out = ffn(h)
    assert out.shape == h.shape
    assert torch.allclose(out[:, 2], ffn(h[:, 2]), atol=1e-6)
    perm = torch.randperm(5)
    assert torch.allclose(ffn(h[:, perm]), out[:, perm], atol=1e-6)
    assert sum(p.numel() for p in ffn.parameters()) == 2 * 16 * 64 + 64 + 16


@pytest.mark.parametrize("norm_first", [False, True])
def test_layer_equals_torch(batch, norm_first):
    x, mask = batch
    torch.manual_seed(1)
    theirs = nn.TransformerEncoderLayer(HIDDEN, HEADS, 64, activation="gelu", batch_first=True,
                                        norm_first=norm_first).eval()
    ours = EncoderLayer.from_torch(theirs).eval()
    assert ours.pre_layer_norm is norm_first
    expected = theirs(x, src_key_padding_mask=mask == 0)
    got, weights = ours(x, mask.bool()[:, None, None, :])
    assert weights is None
    assert (got - expected).abs().max() < 1e-5


@pytest.mark.parametrize("norm_first", [False, True])
def test_stack_equals_torch(batch, norm_first):
    x, mask = batch
    torch.manual_seed(2)
    layer = nn.TransformerEncoderLayer(HIDDEN, HEADS, 64, activation="gelu", batch_first=True, norm_first=norm_first)
    theirs = nn.TransformerEncoder(layer, 3, norm=nn.LayerNorm(HIDDEN) if norm_first else None,
                                   enable_nested_tensor=False).eval()
    ours = Encoder(3, HIDDEN, HEADS, 64, pre_layer_norm=norm_first).eval()
    ours.layer = nn.ModuleList(EncoderLayer.from_torch(l) for l in theirs.layers)
    if norm_first:
        ours.final_norm.load_state_dict(theirs.norm.state_dict())
        ours.final_norm.eps = theirs.norm.eps
    else:
        assert ours.final_norm is None
    got = ours(x, mask).last_hidden_state
    assert (got - theirs(x, src_key_padding_mask=mask == 0)).abs().max() < 1e-5


def test_from_torch_refuses_sequence_first():
    with pytest.raises(ValueError, match="batch_first"):
        EncoderLayer.from_torch(nn.TransformerEncoderLayer(HIDDEN, HEADS, 64))


def test_post_ln_output_is_normalised_pre_ln_is_not(batch):
    x, _ = batch
    torch.manual_seed(0)
    post, _ = EncoderLayer(HIDDEN, HEADS, 64).eval()(x)
    assert torch.allclose(post.mean(-1), torch.zeros(3, 7), atol=1e-5)
    assert torch.allclose(post.var(-1, unbiased=False), torch.ones(3, 7), atol=1e-3)
    pre, _ = EncoderLayer(HIDDEN, HEADS, 64, pre_layer_norm=True).eval()(5 * x)
    assert pre.std(-1).mean() > 2


def test_padding_does_not_leak(batch):
    x, mask = batch
    torch.manual_seed(0)
    enc = Encoder(2, HIDDEN, HEADS, 64).eval()
    out = enc(x, mask).last_hidden_state
    x2 = x.clone()
    x2[mask == 0] = 50.0
    real = mask.bool()
    assert torch.allclose(enc(x2, mask).last_hidden_state[real], out[real], atol=1e-5)
    # an all-ones mask is the same as no mask
    assert torch.allclose(enc(x, torch.ones_like(mask)).last_hidden_state, enc(x).last_hidden_state, atol=1e-6)


def test_hidden_states_and_attentions(batch):
    x, mask = batch
    enc = Encoder(3, HIDDEN, HEADS, 64, pre_layer_norm=True).eval()
    out = enc(x, mask, output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 4 and len(out.attentions) == 3
    assert torch.equal(out.hidden_states[0], x) and torch.equal(out.hidden_states[-1], out.last_hidden_state)
    w = out.attentions[0]
    assert w.shape == (3, HEADS, 7, 7)
    assert torch.allclose(w.sum(-1), torch.ones(3, HEADS, 7), atol=1e-5)
    assert (w[2, :, :, 2:] == 0).all()
    plain = enc(x, mask)
    assert plain.hidden_states is None and plain.attentions is None
    assert torch.allclose(plain.last_hidden_state, out.last_hidden_state, atol=1e-5)


def test_mask_of_another_shape_is_an_error(batch):
    x, mask = batch
    with pytest.raises(ValueError, match="attention_mask"):
        Encoder(1, HIDDEN, HEADS, 64)(x, mask[:, :4])


def test_dropout_only_in_training(batch):
    x, _ = batch
    torch.manual_seed(0)
    enc = Encoder(2, HIDDEN, HEADS, 64, hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    assert not torch.allclose(enc(x).last_hidden_state, enc(x).last_hidden_state)
    enc.eval()
    assert torch.equal(enc(x).last_hidden_state, enc(x).last_hidden_state)


def test_rotary_layer_and_gradients(batch):
    x, mask = batch
    rotary = RotaryEmbedding(HIDDEN // HEADS, 16)
    enc = Encoder(2, HIDDEN, HEADS, 64, rotary=rotary).eval()
    out = enc(x, mask).last_hidden_state
    assert out.shape == x.shape
    out.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())
