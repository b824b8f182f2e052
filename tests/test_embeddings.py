"encoder_book.embeddings: one-hot view, padding, and weight-for-weight equality with HF's BertEmbeddings."
import pytest
import torch

from encoder_book.embeddings import BertEmbeddings, one_hot_embed


def test_one_hot_is_lookup():
    emb = torch.nn.Embedding(50, 8)
    ids = torch.randint(0, 50, (3, 7))
    assert torch.allclose(one_hot_embed(ids, emb.weight), emb(ids), atol=1e-6)


def test_shapes_padding_and_gradients():
    torch.manual_seed(0)
    layer = BertEmbeddings(100, 16, max_position_embeddings=32, pad_token_id=0)
    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    out = layer(ids)
    assert out.shape == (2, 5, 16)
    out.sum().backward()
    assert (layer.word_embeddings.weight.grad[0] == 0).all()
    assert "position_ids" not in layer.state_dict()


def test_too_long_is_a_clear_error():
    layer = BertEmbeddings(100, 8, max_position_embeddings=4)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        layer(torch.ones(1, 5, dtype=torch.long))


def test_matches_hf():
    transformers = pytest.importorskip("transformers")
    from transformers.models.bert.modeling_bert import BertEmbeddings as HF
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=120, hidden_size=24, max_position_embeddings=40, type_vocab_size=2)
    hf = HF(cfg).eval()
    ours = BertEmbeddings(120, 24, max_position_embeddings=40).eval()
    ours.load_state_dict(hf.state_dict(), strict=False)
    ids = torch.randint(1, 120, (3, 11)); types = torch.randint(0, 2, (3, 11))
    pos = torch.arange(3, 14)[None].expand(3, -1)
    assert torch.allclose(ours(ids, types), hf(input_ids=ids, token_type_ids=types), atol=1e-6)
    assert torch.allclose(ours(ids, types, pos), hf(input_ids=ids, token_type_ids=types, position_ids=pos), atol=1e-6)
