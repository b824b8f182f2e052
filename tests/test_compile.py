"No host syncs in the models' forward: fullgraph compile, 0 graph breaks, torch.export."

import pytest
import torch

from encoder_book.bert import (
    BertConfig,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForNextSentencePrediction,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)

CLASSES = [
    BertModel,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertForQuestionAnswering,
    BertForMultipleChoice,
    BertForNextSentencePrediction,
    BertForPreTraining,
]
CFG = BertConfig(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    num_labels=2,
)


def batch(cls, masked: bool):
    ids = torch.randint(1, 99, (2, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    if cls is BertForMultipleChoice:
        ids, mask = ids[:, None].expand(2, 3, 7), mask[:, None].expand(2, 3, 7)
    return (ids, mask) if masked else (ids,)


@pytest.mark.parametrize("masked", [False, True], ids=["no mask", "mask"])
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_no_graph_breaks_and_fullgraph(cls, masked):
    torch._dynamo.reset()
    model = cls(CFG).eval()
    args = batch(cls, masked)
    explained = torch._dynamo.explain(model)(*args)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        want, got = model(*args, return_dict=False), compiled(*args, return_dict=False)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(want, got))


def test_fullgraph_training_step():
    torch._dynamo.reset()
    model = BertForSequenceClassification(CFG).train()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    ids, mask = batch(BertForSequenceClassification, True)
    loss = compiled(ids, mask, labels=torch.tensor([0, 1])).loss
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_eager_checks_still_raise():
    model = BertModel(CFG).eval()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.tensor([[1, 99]]))


def test_torch_export_bert_model():
    torch._dynamo.reset()
    model = BertModel(CFG).eval()
    ids, mask = batch(BertModel, True)
    program = torch.export.export(model, (ids, mask))
    out = program.module()(ids, mask)
    assert torch.allclose(
        out.last_hidden_state, model(ids, mask).last_hidden_state, atol=1e-6
    )


@pytest.mark.slow
def test_inductor_fullgraph():
    torch._dynamo.reset()
    model = BertModel(CFG).eval()
    ids, mask = batch(BertModel, True)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        got = compiled(ids, mask).last_hidden_state
    assert torch.allclose(got, model(ids, mask).last_hidden_state, atol=1e-5)
