"Attention, encoder and positions trace whole: torch.compile(fullgraph=True), dynamo, export."
import pytest
import torch
import torch._dynamo

from encoder_book.attention import MultiHeadAttention, padding_mask_to_sdpa
from encoder_book.encoder import Encoder
from encoder_book.positional import LearnedPositionalEmbedding, RotaryEmbedding

HIDDEN, HEADS = 32, 4
PADDING = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])       # (batch, seq), 1 = real
MASKS = {
    "none": None,
    "padding": PADDING,
    "no padding": torch.ones(2, 6, dtype=torch.long),
    "bool 4-d": torch.ones(6, 6, dtype=torch.bool).tril()[None, None],
    "float 4-d": torch.zeros(2, 1, 1, 6).masked_fill(PADDING[:, None, None] == 0, -1e9),
}


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def graph_breaks(f, *args, **kwargs) -> int:
    "Graph breaks torch._dynamo.explain finds in f(*args, **kwargs)."
    return torch._dynamo.explain(f)(*args, **kwargs).graph_break_count


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("need_weights", [False, True])
def test_attention_compiles_whole(mask, need_weights):
    torch.manual_seed(0)
    mha = MultiHeadAttention(HIDDEN, HEADS).eval()
    x = torch.randn(2, 6, HIDDEN)
    m = MASKS[mask]
    assert graph_breaks(mha, x, attention_mask=m, need_weights=need_weights) == 0
    compiled = torch.compile(mha, fullgraph=True, backend="aot_eager")
    got, w = compiled(x, attention_mask=m, need_weights=need_weights)
    expected, w_ref = mha(x, attention_mask=m, need_weights=need_weights)
    assert torch.allclose(got, expected, atol=1e-6)
    assert (w is None) == (w_ref is None) and (w is None or torch.allclose(w, w_ref, atol=1e-6))


def test_attention_compiles_whole_with_gradients_kdim_and_unbatched():
    torch.manual_seed(0)
    mha = MultiHeadAttention(HIDDEN, HEADS, kdim=12, vdim=20, dropout=0.1).train()
    x, k, v = torch.randn(2, 6, HIDDEN), torch.randn(2, 9, 12), torch.randn(2, 9, 20)
    keep = torch.ones(2, 9, dtype=torch.long)
    keep[1, 4:] = 0
    compiled = torch.compile(mha, fullgraph=True, backend="aot_eager")
    compiled(x, k, keep, value_states=v)[0].sum().backward()
    assert mha.key.weight.grad is not None
    mha.eval()
    assert graph_breaks(mha, x[0], k[0], keep[0], value_states=v[0]) == 0
    got = torch.compile(mha, fullgraph=True, backend="aot_eager")(x[0], k[0], keep[0],
                                                                  value_states=v[0])[0]
    assert torch.allclose(got, mha(x[0], k[0], keep[0], value_states=v[0])[0], atol=1e-6)


@pytest.mark.parametrize("mask", ["none", "padding", "no padding", "bool 4-d"])
@pytest.mark.parametrize("pre_layer_norm", [False, True])
@pytest.mark.parametrize("rotary", [False, True])
def test_encoder_stack_compiles_whole(mask, pre_layer_norm, rotary):
    torch.manual_seed(0)
    rope = RotaryEmbedding(HIDDEN // HEADS, 64) if rotary else None
    enc = Encoder(2, HIDDEN, HEADS, 64, pre_layer_norm=pre_layer_norm, rotary=rope).eval()
    x, m = torch.randn(2, 6, HIDDEN), MASKS[mask]
    assert graph_breaks(enc, x, m, True, True) == 0
    got = torch.compile(enc, fullgraph=True, backend="aot_eager")(x, m, True, True)
    expected = enc(x, m, True, True)
    assert torch.allclose(got.last_hidden_state, expected.last_hidden_state, atol=1e-5)
    assert len(got.hidden_states) == 3 and len(got.attentions) == 2


def test_encoder_trains_compiled_with_padding():
    torch.manual_seed(0)
    enc = Encoder(2, HIDDEN, HEADS, 64).train()
    compiled = torch.compile(enc, fullgraph=True, backend="aot_eager")
    compiled(torch.randn(2, 6, HIDDEN), PADDING).last_hidden_state.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_rotary_with_position_ids_exports_and_compiles():
    rope = RotaryEmbedding(8, max_position_embeddings=16)
    q, k = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)
    ids = torch.tensor([[0, 1, 2, 3, 4], [10, 12, 14, 16, 30]])   # some beyond the table
    expected = rope(q, k, ids)
    for strict in (False, True):
        ep = torch.export.export(rope, (q, k, ids), strict=strict)
        for a, b in zip(ep.module()(q, k, ids), expected):
            assert torch.allclose(a, b, atol=1e-6)
    assert graph_breaks(rope, q, k, ids) == 0
    got = torch.compile(rope, fullgraph=True, backend="aot_eager")(q, k, ids[0])
    for a, b in zip(got, rope(q, k, ids[0])):
        assert torch.allclose(a, b, atol=1e-6)


def test_rotary_position_ids_inside_and_beyond_the_table_agree():
    small, big = RotaryEmbedding(8, 16), RotaryEmbedding(8, 64)
    q, k = torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    ids = torch.tensor([3, 15, 16, 40, 63, -2])            # in small's table, beyond it, negative
    for a, b in zip(small(q, k, ids), big(q, k, ids.clamp(min=0))):
        assert torch.allclose(a[..., :5, :], b[..., :5, :], atol=1e-5)
    # a negative id rotates backwards (it was looked up from the table's end before)
    qn, _ = small(q, k, ids)
    qp, _ = small(q[..., 5:, :], k[..., 5:, :], torch.tensor([-2]))
    assert torch.allclose(qn[..., 5:, :], qp, atol=1e-6)
    assert not torch.allclose(qp, small(q[..., 5:, :], k[..., 5:, :], torch.tensor([14]))[0])


def test_learned_positions_with_ids_compile_whole():
    emb = LearnedPositionalEmbedding(16, HIDDEN)
    x, ids = torch.randn(2, 5, HIDDEN), torch.tensor([3, 4, 5, 6, 7])
    assert graph_breaks(emb, x, ids) == 0
    ep = torch.export.export(emb, (x, ids))
    assert torch.allclose(ep.module()(x, ids), emb(x, ids))


def test_encoder_exports_with_a_padding_mask():
    torch.manual_seed(0)
    enc = Encoder(2, HIDDEN, HEADS, 64, rotary=RotaryEmbedding(HIDDEN // HEADS, 64)).eval()
    x = torch.randn(2, 6, HIDDEN)
    ep = torch.export.export(enc, (x, PADDING))
    other = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]])     # other values, same shape
    for m in (PADDING, other):
        assert torch.allclose(ep.module()(x, m).last_hidden_state,
                              enc(x, m).last_hidden_state, atol=1e-5)


def test_eager_mode_still_checks_values():
    mha = MultiHeadAttention(HIDDEN, HEADS)
    with pytest.raises(ValueError, match="1 for real tokens"):
        mha(torch.randn(2, 6, HIDDEN), attention_mask=torch.full((2, 6), -1e9))
    with pytest.raises(ValueError, match="1 for real tokens"):
        padding_mask_to_sdpa(torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="out of range"):
        LearnedPositionalEmbedding(16, 8)(torch.randn(1, 2, 8), torch.tensor([3, 16]))
    with pytest.raises(ValueError, match="position_ids must be"):
        RotaryEmbedding(8)(torch.randn(1, 1, 3, 8), torch.randn(1, 1, 3, 8), torch.arange(4))


def test_encoder_compiles_fullgraph_with_padding():
    "AOT autograd traces the whole encoder with padding (inductor: test_compile.py's BertModel)."
    torch.manual_seed(0)
    enc = Encoder(2, HIDDEN, HEADS, 64).eval()
    x = torch.randn(2, 6, HIDDEN)
    got = torch.compile(enc, fullgraph=True, backend="aot_eager")(x, PADDING).last_hidden_state
    assert torch.allclose(got, enc(x, PADDING).last_hidden_state, atol=1e-5)
