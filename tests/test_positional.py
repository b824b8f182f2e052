"encoder_book.positional: sinusoidal, learned and rotary positions; batch-first values, properties, errors, dtype/device."
import math

import pytest
import torch

from encoder_book.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    apply_rotary,
    rotate_half,
    shift_matrix,
    sinusoidal_table,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def n_params(module):
    return sum(p.numel() for p in module.parameters())


# ---- sinusoidal ---------------------------------------------------------------------------------------------------

def test_table_matches_formula():
    d = 10
    pe = sinusoidal_table(30, d, dtype=torch.float64)
    assert pe.shape == (30, d) and sinusoidal_table(30, d).dtype == torch.float32
    for pos in range(30):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-12)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-12)
    assert torch.allclose(sinusoidal_table(5, 4, base=100.0, dtype=torch.float64)[3, 2],
                          torch.tensor(math.sin(3 / 10.0), dtype=torch.float64))


def test_sinusoidal_shapes_and_no_parameters():
    enc = SinusoidalPositionalEncoding(hidden_size=12, max_len=20)
    x = torch.randn(3, 7, 12)
    assert enc(x).shape == (3, 7, 12)
    assert n_params(enc) == 0
    assert len(enc.state_dict()) == 0                     # the table is a non-persistent buffer
    assert "pe" in dict(enc.named_buffers())


def test_sinusoidal_is_batch_first():
    enc = SinusoidalPositionalEncoding(hidden_size=8, max_len=32)
    added = enc(torch.zeros(5, 9, 8))                     # (batch, seq, hidden): the output is the encoding
    for b in range(5):                                    # every batch element gets the same vectors ...
        assert torch.equal(added[b], added[0])
    assert torch.allclose(added[0], sinusoidal_table(9, 8), atol=1e-7)
    rows = added[0]                                       # ... and different positions get different ones
    assert torch.cdist(rows, rows).add(torch.eye(9) * 100).min() > 1e-3


def test_sinusoidal_batch_of_one_and_slot_independence():
    enc = SinusoidalPositionalEncoding(hidden_size=8)
    s = torch.randn(1, 6, 8)
    batch = torch.cat([torch.randn(3, 6, 8), s])
    assert torch.equal(enc(s)[0], enc(batch)[3])          # a sentence's encoding does not depend on its batch slot


def test_dot_product_depends_only_on_distance():
    P = sinusoidal_table(100, 32, dtype=torch.float64)
    G = P @ P.T
    for k in (0, 1, 5, 40):
        diag = torch.diagonal(G, offset=k)
        assert torch.allclose(diag, diag[0].expand_as(diag), atol=1e-10)


@pytest.mark.parametrize("d", [2, 8, 64])
def test_shift_matrix(d):
    P = sinusoidal_table(400, d, dtype=torch.float64)
    for k in (1, 3, 50, 151):
        M = shift_matrix(k, d)
        assert M.shape == (d, d)
        assert torch.allclose(M.T @ M, torch.eye(d, dtype=torch.float64), atol=1e-12)
        for pos in (0, 1, 10, 200):
            assert torch.allclose(P[pos + k], M @ P[pos], atol=1e-10)
        assert torch.allclose(P[k:], P[:-k] @ M.T, atol=1e-10)      # the same M for every position
    assert torch.allclose(shift_matrix(0, d), torch.eye(d, dtype=torch.float64))


def test_sinusoidal_beyond_table_is_computed():
    small, big = SinusoidalPositionalEncoding(6, max_len=4), SinusoidalPositionalEncoding(6, max_len=64)
    x = torch.randn(2, 30, 6)
    assert torch.equal(small(x), big(x))


def test_sinusoidal_errors():
    with pytest.raises(ValueError, match="even"):
        SinusoidalPositionalEncoding(7)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_table(10, 5)
    with pytest.raises(ValueError):
        SinusoidalPositionalEncoding(8)(torch.randn(3, 5, 6))       # wrong hidden size


# ---- learned ------------------------------------------------------------------------------------------------------

def test_learned_shapes_parameters_and_batch_first():
    torch.manual_seed(0)
    emb = LearnedPositionalEmbedding(max_position_embeddings=16, hidden_size=6)
    assert n_params(emb) == 16 * 6
    added = emb(torch.zeros(4, 10, 6))
    assert added.shape == (4, 10, 6)
    assert torch.equal(added, emb.position_embeddings.weight[:10].expand(4, 10, 6))
    ids = torch.tensor([3, 4, 5])
    assert torch.equal(emb(torch.zeros(1, 3, 6), ids)[0], emb.position_embeddings.weight[3:6])
    emb(torch.randn(2, 5, 6)).sum().backward()
    assert emb.position_embeddings.weight.grad is not None          # learned: it gets gradients


def test_learned_too_long_is_a_clear_error():
    emb = LearnedPositionalEmbedding(8, 4)
    emb(torch.zeros(1, 8, 4))                                       # exactly the table size is fine
    with pytest.raises(ValueError, match="max_position_embeddings=8"):
        emb(torch.zeros(1, 9, 4))
    with pytest.raises(ValueError, match="out of range"):
        emb(torch.zeros(1, 2, 4), torch.tensor([0, 8]))


# ---- rotary -------------------------------------------------------------------------------------------------------

def rope_complex(x, positions, base=10000.0):
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2:].double())
    z = z * torch.polar(torch.ones_like(theta), positions.double()[..., None] * theta)
    return torch.cat([z.real, z.imag], dim=-1)


def test_rotate_half():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert torch.equal(rotate_half(x), torch.tensor([-3.0, -4.0, 1.0, 2.0]))
    assert torch.equal(apply_rotary(x, torch.ones(4), torch.zeros(4)), x)


def test_rope_shapes_no_parameters_no_state():
    rope = RotaryEmbedding(8, max_position_embeddings=32)
    q, k = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 10, 8)
    qr, kr = rope(q, k)
    assert qr.shape == q.shape and kr.shape == k.shape
    assert n_params(rope) == 0 and len(rope.state_dict()) == 0
    assert torch.allclose(qr.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    assert torch.equal(qr[:, :, 0], q[:, :, 0])                     # position 0 is not rotated


def test_rope_equals_complex_formulation():
    torch.manual_seed(0)
    rope = RotaryEmbedding(16, max_position_embeddings=64, base=500.0)
    q, k = torch.randn(2, 2, 12, 16), torch.randn(2, 2, 12, 16)
    qr, kr = rope(q, k)
    pos = torch.arange(12)
    assert torch.allclose(qr.double(), rope_complex(q, pos, base=500.0), atol=1e-5)
    assert torch.allclose(kr.double(), rope_complex(k, pos, base=500.0), atol=1e-5)
    ids = torch.stack([torch.arange(12) + 7, torch.arange(12) * 3])   # (batch, seq) position ids
    qr, _ = rope(q, k, ids)
    assert torch.allclose(qr.double(), rope_complex(q, ids[:, None], base=500.0), atol=1e-4)


def test_rope_relative_property():
    torch.manual_seed(1)
    rope = RotaryEmbedding(32, max_position_embeddings=256)
    q, k = torch.randn(32), torch.randn(32)

    def score(m, n):
        qr, _ = rope(q.view(1, 1, 1, 32), q.view(1, 1, 1, 32), torch.tensor([m]))
        kr, _ = rope(k.view(1, 1, 1, 32), k.view(1, 1, 1, 32), torch.tensor([n]))
        return (qr * kr).sum().item()

    for m, n in [(0, 0), (3, 7), (10, 2), (40, 41)]:
        for s in (1, 5, 100):
            assert score(m + s, n + s) == pytest.approx(score(m, n), abs=1e-4)
    assert score(3, 7) != pytest.approx(score(3, 8), abs=1e-3)       # but it does depend on the offset


def test_rope_beyond_cache_is_computed():
    small, big = RotaryEmbedding(8, max_position_embeddings=4), RotaryEmbedding(8, max_position_embeddings=128)
    q = torch.randn(1, 2, 50, 8)
    for a, b in zip(small(q, q), big(q, q)):
        assert torch.equal(a, b)
    ids = torch.arange(90, 100)
    for a, b in zip(small(q[:, :, :10], q[:, :, :10], ids), big(q[:, :, :10], q[:, :, :10], ids)):
        assert torch.equal(a, b)


def test_rope_errors():
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(7)
    rope = RotaryEmbedding(8)
    with pytest.raises(ValueError):
        rope(torch.randn(1, 1, 4, 6), torch.randn(1, 1, 4, 6))      # wrong head_dim
    with pytest.raises(ValueError):
        rope(torch.randn(1, 1, 4, 8), torch.randn(1, 1, 5, 8))      # different lengths


def test_rope_matches_hf_llama():
    transformers = pytest.importorskip("transformers")
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    cfg = transformers.LlamaConfig(hidden_size=32, num_attention_heads=2, max_position_embeddings=64)
    q, k = torch.randn(2, 2, 9, 16), torch.randn(2, 2, 9, 16)
    ids = torch.arange(3, 12)[None].expand(2, -1)
    cos, sin = llama.LlamaRotaryEmbedding(cfg)(q, ids)
    q_hf, k_hf = llama.apply_rotary_pos_emb(q, k, cos, sin)
    q_ours, k_ours = RotaryEmbedding(16, max_position_embeddings=64)(q, k, ids)
    assert torch.allclose(q_ours, q_hf, atol=1e-6) and torch.allclose(k_ours, k_hf, atol=1e-6)


# ---- dtype and device ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_and_device_follow_the_input(device, dtype):
    sin_enc = SinusoidalPositionalEncoding(8, max_len=16).to(device)
    learned = LearnedPositionalEmbedding(16, 8).to(device)
    rope = RotaryEmbedding(8, max_position_embeddings=16).to(device)
    x = torch.randn(2, 5, 8, device=device, dtype=dtype)
    for out in (sin_enc(x), learned(x), sin_enc(torch.randn(2, 20, 8, device=device, dtype=dtype))):
        assert out.dtype == dtype and out.device.type == device
    q = torch.randn(2, 2, 5, 8, device=device, dtype=dtype)
    for out in (*rope(q, q), *rope(q, q, torch.arange(20, 25, device=device))):
        assert out.dtype == dtype and out.device.type == device
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
    assert torch.allclose(sin_enc(x).float().cpu(), (x.float().cpu() + sinusoidal_table(5, 8)), atol=tol * 4)


def test_rope_position_ids_in_the_table_use_its_rows_exactly():
    from encoder_book.positional import apply_rotary
    rope = RotaryEmbedding(8, max_position_embeddings=32)
    q, k = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 4, 8)
    ids = torch.tensor([[0, 5, 9, 31], [1, 2, 3, 4]])                    # (batch, seq)
    cos, sin = rope.cos_cached[ids][:, None], rope.sin_cached[ids][:, None]
    q_rot, k_rot = rope(q, k, ids)
    assert torch.equal(q_rot, apply_rotary(q, cos, sin))
    assert torch.equal(k_rot, apply_rotary(k, cos, sin))


@pytest.mark.parametrize("ids", [torch.arange(5), torch.zeros(2, 3, 4, dtype=torch.long)])
def test_rope_position_ids_of_the_wrong_shape(ids):
    q = torch.randn(1, 2, 4, 8)
    with pytest.raises(ValueError, match="position_ids must be"):
        RotaryEmbedding(8)(q, q, ids)


def test_learned_position_ids_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match="position id 16 is out of range"):
        LearnedPositionalEmbedding(16, 4)(torch.zeros(1, 2, 4), torch.tensor([0, 16]))
