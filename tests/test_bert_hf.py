"HF's contract for the eight BERT classes: conversion, files, losses, outputs, errors."

import json
import warnings

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from encoder_book.bert import (  # noqa: E402
    BertConfig,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForNextSentencePrediction,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    sequence_classification_loss,
)

transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
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
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    num_labels=3,
)


def config_for(cls, **kw):
    kw.setdefault("num_labels", 2 if cls is BertForQuestionAnswering else 3)
    return CFG.replace(**kw)


def inputs(cls, labels=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 99, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    types = torch.zeros_like(ids)
    types[:, 4:] = 1
    d = dict(input_ids=ids, attention_mask=mask, token_type_ids=types)
    if cls is BertForMultipleChoice:
        d = {k: v[:, None].expand(2, 3, 7).contiguous() for k, v in d.items()}
    if labels:
        d.update(
            {
                BertForMaskedLM: dict(labels=torch.where(mask.bool(), ids, -100)),
                BertForSequenceClassification: dict(labels=torch.tensor([0, 2])),
                BertForTokenClassification: dict(
                    labels=torch.randint(0, 3, (2, 7), generator=g)
                ),
                BertForQuestionAnswering: dict(
                    start_positions=torch.tensor([1, 3]),
                    end_positions=torch.tensor([2, 30]),
                ),
                BertForMultipleChoice: dict(labels=torch.tensor([1, 2])),
                BertForNextSentencePrediction: dict(labels=torch.tensor([0, 1])),
                BertForPreTraining: dict(
                    labels=ids, next_sentence_label=torch.tensor([1, 0])
                ),
            }.get(cls, {})
        )
    return d


def flat(t):
    return [x for y in t for x in (flat(y) if isinstance(y, tuple) else [y])]


def max_diff(a, b):
    a, b = flat(a), flat(b)
    assert len(a) == len(b)
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def hf_model(cls, impl="eager", **kw):
    torch.manual_seed(0)
    return getattr(transformers, cls.hf_class)(
        config_for(cls, **kw).to_hf(attn_implementation=impl)
    ).eval()


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_from_hf_and_to_hf_equal_hf_tuple_for_tuple(cls):
    hf = hf_model(cls)
    ours = cls.from_hf(hf)
    x = inputs(cls)
    with torch.no_grad():
        want = hf(
            **x, output_attentions=True, output_hidden_states=True, return_dict=False
        )
        got = ours(
            **x, output_attentions=True, output_hidden_states=True, return_dict=False
        )
        back_model = ours.to_hf(attn_implementation="eager")
        back = back_model(**x, return_dict=False)
    assert isinstance(got, tuple) and len(flat(got)) == len(flat(want))
    assert max_diff(got, want) < 1e-5
    assert max_diff(back, hf(**x, return_dict=False)) < 1e-5
    assert type(back_model) is type(hf)
    assert ours.num_parameters() == hf.num_parameters()
    assert ours.num_parameters(exclude_embeddings=True) == hf.num_parameters(
        exclude_embeddings=True
    )


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_save_pretrained_both_ways(cls, tmp_path):
    torch.manual_seed(1)
    ours = cls(
        config_for(
            cls,
            id2label={0: "neg", 1: "pos"}
            if cls is BertForQuestionAnswering
            else {0: "a", 1: "b", 2: "c"},
        )
    ).eval()
    x = inputs(cls)
    ours.save_pretrained(tmp_path / "ours")
    hf = getattr(transformers, cls.hf_class).from_pretrained(tmp_path / "ours").eval()
    hf.save_pretrained(tmp_path / "hf")
    again = cls.from_pretrained(tmp_path / "hf")
    with torch.no_grad():
        want = ours(**x, return_dict=False)
        assert max_diff(hf(**x, return_dict=False), want) < 1e-5
        assert max_diff(again(**x, return_dict=False), want) < 1e-5
    assert hf.config.id2label == ours.config.id2label == again.config.id2label
    assert hf.config.label2id == ours.config.label2id == again.config.label2id


def test_output_objects_index_like_hf():
    torch.manual_seed(0)
    model = BertForSequenceClassification(CFG).eval()
    x = inputs(BertForSequenceClassification)
    out = model(**x)
    assert out[0] is out.loss and out["logits"] is out.logits and out[1] is out.logits
    assert list(out.keys()) == ["loss", "logits"] and len(out) == 2
    assert out.to_tuple() == (out.loss, out.logits)
    with pytest.raises(KeyError):
        out["hidden_states"]
    no_loss = model(x["input_ids"])
    assert no_loss[0] is no_loss.logits
    assert model(x["input_ids"], output_hidden_states=True)[1][0].shape == (2, 7, 32)


def test_config_output_flags_and_return_dict():
    cfg = CFG.replace(output_hidden_states=True, output_attentions=True)
    model = BertModel(cfg).eval()
    ids = inputs(BertModel)["input_ids"]
    out = model(ids)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    assert model(ids, output_attentions=False).attentions is None  # argument wins
    assert isinstance(BertModel(CFG.replace(return_dict=False))(ids), tuple)
    assert isinstance(BertModel(CFG.replace(torchscript=True))(ids), tuple)


@pytest.mark.parametrize(
    "cls", [BertModel, BertForSequenceClassification, BertForMultipleChoice]
)
def test_inputs_embeds_equal_input_ids(cls):
    torch.manual_seed(0)
    model = cls(CFG).eval()
    x = inputs(cls, labels=False)
    embeds = model.get_input_embeddings()(x["input_ids"])
    with torch.no_grad():
        a = model(**x, return_dict=False)
        b = model(
            inputs_embeds=embeds,
            attention_mask=x["attention_mask"],
            token_type_ids=x["token_type_ids"],
            return_dict=False,
        )
    assert max_diff(a, b) < 1e-6
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model(x["input_ids"], inputs_embeds=embeds)


@pytest.mark.parametrize(
    "problem_type,labels",
    [
        ("regression", torch.tensor([[0.5, 1.0, -2.0], [1.0, 0.0, 3.0]])),
        ("single_label_classification", torch.tensor([2, 0])),
        (
            "multi_label_classification",
            torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]),
        ),
        (None, torch.tensor([2, 0])),
        (None, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])),
    ],
)
def test_problem_type_losses_equal_hf(problem_type, labels):
    hf = hf_model(BertForSequenceClassification, problem_type=problem_type)
    ours = BertForSequenceClassification.from_hf(hf)
    assert ours.config.problem_type == problem_type
    x = inputs(BertForSequenceClassification, labels=False)
    with torch.no_grad():
        want, got = hf(**x, labels=labels).loss, ours(**x, labels=labels).loss
    assert torch.allclose(got, want, atol=1e-6), (got, want)


def test_regression_with_one_label_equals_hf():
    hf = hf_model(BertForSequenceClassification, num_labels=1)
    ours = BertForSequenceClassification.from_hf(hf)
    x = inputs(BertForSequenceClassification, labels=False)
    labels = torch.tensor([0.5, -1.0])
    with torch.no_grad():
        assert torch.allclose(
            ours(**x, labels=labels).loss, hf(**x, labels=labels).loss
        )


def test_problem_type_is_checked():
    with pytest.raises(ValueError, match="problem_type"):
        CFG.replace(problem_type="ranking")
    with pytest.raises(ValueError, match="num_labels > 1"):
        CFG.replace(num_labels=1, problem_type="single_label_classification")
    cfg = CFG.replace(problem_type="single_label_classification")
    with pytest.raises(TypeError, match="integer class labels"):
        sequence_classification_loss(cfg, torch.zeros(2, 3), torch.zeros(2))


def test_untied_decoder_round_trip(tmp_path):
    hf = hf_model(BertForMaskedLM, tie_word_embeddings=False)
    with torch.no_grad():
        hf.cls.predictions.decoder.weight.normal_()  # differs from the embeddings
    assert not torch.equal(
        hf.cls.predictions.decoder.weight, hf.bert.embeddings.word_embeddings.weight
    )
    ours = BertForMaskedLM.from_hf(hf)
    assert torch.equal(ours.cls.decoder.weight, hf.cls.predictions.decoder.weight)
    x = inputs(BertForMaskedLM)
    with torch.no_grad():
        assert max_diff(ours(**x, return_dict=False), hf(**x, return_dict=False)) < 1e-5
        assert (
            max_diff(
                ours.to_hf("eager")(**x, return_dict=False), hf(**x, return_dict=False)
            )
            < 1e-5
        )
    hf.save_pretrained(tmp_path / "hf")
    loaded = BertForMaskedLM.from_pretrained(tmp_path / "hf")
    assert torch.equal(loaded.cls.decoder.weight, hf.cls.predictions.decoder.weight)
    loaded.save_pretrained(tmp_path / "ours")
    assert (
        json.loads((tmp_path / "ours" / "config.json").read_text())[
            "tie_word_embeddings"
        ]
        is False
    )
    hf2 = transformers.BertForMaskedLM.from_pretrained(tmp_path / "ours")
    assert torch.equal(
        hf2.cls.predictions.decoder.weight, hf.cls.predictions.decoder.weight
    )
    tied = BertForMaskedLM(CFG)
    assert tied.cls.decoder is None


def test_id2label_survives_every_round_trip(tmp_path):
    labels = {0: "O", 1: "B-PER", 2: "I-PER"}
    cfg = CFG.replace(id2label=labels, label2id=None)
    assert cfg.label2id == {"O": 0, "B-PER": 1, "I-PER": 2}
    assert BertConfig.from_hf(cfg.to_hf()) == cfg
    cfg.save_pretrained(tmp_path)
    assert transformers.BertConfig.from_pretrained(tmp_path).id2label == labels
    assert BertConfig.from_pretrained(tmp_path) == cfg
    new = BertConfig.from_pretrained(tmp_path).replace(
        num_labels=5
    )  # new head: new names
    assert new.id2label == {i: f"LABEL_{i}" for i in range(5)}
    with pytest.raises(ValueError, match="id2label"):
        BertConfig(num_labels=3, id2label={0: "a", 1: "b"})


def test_conveniences():
    model = BertForMaskedLM(CFG)
    assert model.device == torch.device("cpu")
    n = sum(p.numel() for p in model.parameters())
    assert model.num_parameters() == n
    emb = sum(
        m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding)
    )
    assert model.num_parameters(exclude_embeddings=True) == n - emb
    model.bert.embeddings.requires_grad_(False)
    assert model.num_parameters(only_trainable=True) == n - sum(
        p.numel() for p in model.bert.embeddings.parameters()
    )
    old = model.get_input_embeddings().weight.detach().clone()
    new = model.resize_token_embeddings(105, pad_to_multiple_of=8)
    assert (
        new.num_embeddings == 112 == model.config.vocab_size
        and model.cls.bias.shape == (112,)
    )
    assert torch.equal(new.weight[:99], old)
    out = model(torch.tensor([[1, 111]]))
    assert out.logits.shape == (1, 2, 112)
    with pytest.raises(ValueError, match="new_num_tokens"):
        model.resize_token_embeddings(0)
    model.set_input_embeddings(torch.nn.Embedding(112, 32))
    with pytest.raises(TypeError):
        model.set_input_embeddings(torch.nn.Linear(3, 3))


def test_resize_equals_hf():
    hf = hf_model(BertForMaskedLM)
    ours = BertForMaskedLM.from_hf(hf)
    hf.resize_token_embeddings(120, mean_resizing=False)
    ours.resize_token_embeddings(120)
    with torch.no_grad():  # the new rows are random in both: copy them
        ours.get_input_embeddings().weight[99:] = hf.get_input_embeddings().weight[99:]
        ours.cls.bias[99:] = hf.cls.predictions.bias[99:]
    x = dict(input_ids=torch.tensor([[1, 110, 119]]))
    with torch.no_grad():
        assert (ours(**x).logits - hf(**x).logits).abs().max() < 1e-5


def test_ignore_mismatched_sizes_any_tensor(tmp_path):
    BertForSequenceClassification(CFG).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="ignore_mismatched_sizes"):
        BertForSequenceClassification.from_pretrained(tmp_path, vocab_size=120)
    with pytest.warns(
        UserWarning, match="newly initialized because the shapes did not match"
    ):
        m = BertForSequenceClassification.from_pretrained(
            tmp_path, vocab_size=120, ignore_mismatched_sizes=True
        )
    assert m.get_input_embeddings().num_embeddings == 120
    with pytest.raises(TypeError, match="unknown config options: hiden_size"):
        BertForSequenceClassification.from_pretrained(tmp_path, hiden_size=8)


def test_gradient_checkpointing_same_gradients():
    torch.manual_seed(0)
    model = BertForSequenceClassification(
        CFG.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    )
    x = inputs(BertForSequenceClassification)
    model(**x).loss.backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    model(**x).loss.backward()
    assert all(
        torch.allclose(p.grad, w, atol=1e-6) for p, w in zip(model.parameters(), want)
    )
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing


def test_jit_trace_with_return_dict_false():
    torch.manual_seed(0)
    model = BertForSequenceClassification(CFG.replace(torchscript=True)).eval()
    x = inputs(BertForSequenceClassification, labels=False)
    args = (x["input_ids"], x["attention_mask"], x["token_type_ids"])
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", torch.jit.TracerWarning
        )  # shape checks, constant
        traced = torch.jit.trace(model, args)
    assert max_diff(traced(*args), model(*args)) < 1e-6


@pytest.mark.slow
def test_onnx_export(tmp_path):
    "ONNX export (needs the onnx and onnxscript packages; onnxruntime checks the numbers)."
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    model = BertModel(CFG.replace(return_dict=False)).eval()
    x = inputs(BertModel, labels=False)
    args = (x["input_ids"], x["attention_mask"])
    torch.onnx.export(model, args, str(tmp_path / "m.onnx"))
    assert (tmp_path / "m.onnx").stat().st_size > 0
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {n: a.numpy() for n, a in zip(names, args)})
    with torch.no_grad():
        want = model(*args)
    assert (
        max(abs(torch.from_numpy(g) - w).max().item() for g, w in zip(got, want)) < 1e-5
    )


def test_unsupported_config_fails_at_load(tmp_path):
    for key, value in [
        ("is_decoder", True),
        ("add_cross_attention", True),
        ("pruned_heads", {"0": [1]}),
        ("position_embedding_type", "relative_key"),
        ("hidden_act", "gelu_fast"),
        ("problem_type", "ranking"),
    ]:
        d = CFG.to_json_dict()
        d[key] = value
        (tmp_path / "config.json").write_text(json.dumps(d))
        with pytest.raises(
            ValueError, match=key if key != "pruned_heads" else "pruned_heads"
        ):
            BertConfig.from_pretrained(tmp_path)


def test_bad_options_rejected():
    for kw, err in [
        (dict(tie_word_embeddings="no"), TypeError),
        (dict(return_dict=1), TypeError),
        (dict(id2label=[0, 1]), TypeError),
        (dict(id2label={"x": "a"}), ValueError),
    ]:
        with pytest.raises(err, match=next(iter(kw))):
            CFG.replace(**kw)
    with pytest.raises(ValueError, match="num_labels=2"):
        BertForQuestionAnswering(CFG)
    qa = BertForQuestionAnswering(CFG.replace(num_labels=2))
    with pytest.raises(ValueError, match="start_positions and end_positions"):
        qa(torch.tensor([[1, 2]]), start_positions=torch.tensor([0]))
    with pytest.raises(ValueError, match="num_choices"):
        BertForMultipleChoice(CFG)(torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="token labels"):
        BertForTokenClassification(CFG)(
            torch.tensor([[1, 2]]), labels=torch.tensor([1])
        )


def test_qa_loss_ignores_positions_outside_like_hf():
    hf = hf_model(BertForQuestionAnswering)
    ours = BertForQuestionAnswering.from_hf(hf)
    x = inputs(BertForQuestionAnswering)
    with torch.no_grad():
        assert torch.allclose(ours(**x).loss, hf(**x).loss, atol=1e-6)
    out = ours(**x)
    want = (
        F.cross_entropy(out.start_logits, torch.tensor([1, 3]))
        + F.cross_entropy(out.end_logits[:1], torch.tensor([2]))
    ) / 2
    assert torch.allclose(out.loss, want)


ROPE = CFG.replace(position_embedding_type="rotary")


def _sharpened(model):
    "Queries and keys scaled up, so that attention (and so positions) matter."
    with torch.no_grad():
        for layer in getattr(model, "bert", model).encoder.layer:
            layer.attention.query.weight.mul_(10)
            layer.attention.key.weight.mul_(10)
            layer.attention.query.bias.normal_()
            layer.attention.key.bias.normal_()
    return model


@pytest.mark.parametrize(
    "cls, hf_name, tie",
    [
        (BertModel, "RoFormerModel", True),
        (BertForMaskedLM, "RoFormerForMaskedLM", True),
        (BertForMaskedLM, "RoFormerForMaskedLM", False),
    ],
)
def test_rotary_models_load_in_transformers_as_roformer(tmp_path, cls, hf_name, tie):
    from encoder_book.bert import save_roformer

    torch.manual_seed(0)
    ours = _sharpened(cls(ROPE.replace(tie_word_embeddings=tie))).eval()
    save_roformer(ours, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [
        hf_name
    ]
    hf = getattr(transformers, hf_name).from_pretrained(tmp_path).eval()
    ids = torch.randint(1, 99, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    x = dict(input_ids=ids, attention_mask=mask, token_type_ids=types)
    with torch.no_grad():
        a, b = ours(**x)[0], hf(**x)[0]
    keep = mask.bool()
    torch.testing.assert_close(b[keep], a[keep], atol=1e-5, rtol=0)
    # the permutation is what makes them equal: without it the outputs differ
    from encoder_book.bert import roformer_permutation

    perm = roformer_permutation(ROPE.head_dim)
    assert sorted(perm.tolist()) == list(range(ROPE.head_dim))
    assert perm[:4].tolist() == [0, ROPE.head_dim // 2, 1, ROPE.head_dim // 2 + 1]


@pytest.mark.parametrize(
    "config, cls, match",
    [
        (CFG, BertModel, "position_embedding_type=.absolute."),
        (ROPE.replace(pre_layer_norm=True), BertModel, "pre_layer_norm=True"),
        (ROPE.replace(rope_theta=500.0), BertModel, "rope_theta=500.0"),
        (ROPE, BertForSequenceClassification, "RoFormer's classification"),
    ],
)
def test_save_roformer_refuses_what_roformer_cannot_hold(tmp_path, config, cls, match):
    from encoder_book.bert import save_roformer

    with pytest.raises(ValueError, match=match):
        save_roformer(cls(config), tmp_path / "r")
    assert not (tmp_path / "r").exists()
