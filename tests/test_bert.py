"encoder_book.bert: config, models, heads, HF interop (objects and files, both ways), counts and clear errors."
import dataclasses
import json
import warnings

import pytest
import torch
import torch.nn.functional as F

from encoder_book.bert import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    flops_per_token,
    from_hf_key,
    mean_pooling,
    parameter_counts,
    to_hf_key,
)

transformers = pytest.importorskip("transformers")
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

CFG = BertConfig(vocab_size=150, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                 max_position_embeddings=24, num_labels=3)
CLASSES = [BertModel, BertForMaskedLM, BertForSequenceClassification]


@pytest.fixture(scope="module")
def inputs():
    "A padded batch of sentence pairs."
    torch.manual_seed(0)
    lengths = [(6, 4), (3, 2), (8, 7), (2, 1)]
    seq = max(a + b for a, b in lengths)
    ids = torch.zeros(len(lengths), seq, dtype=torch.long)
    types, mask = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, (a, b) in enumerate(lengths):
        ids[i, :a + b] = torch.randint(1, 150, (a + b,))
        types[i, a:a + b] = 1
        mask[i, :a + b] = 1
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


def main_output(out):
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def max_err(a, b, mask):
    a, b = main_output(a), main_output(b)
    if a.dim() == 3:
        return (a - b)[mask.bool()].abs().max().item()
    return (a - b).abs().max().item()


# ---------------------------------------------------------------- config

def test_config_defaults_are_hf_bert_base():
    ours, theirs = BertConfig(), transformers.BertConfig()
    for f in dataclasses.fields(BertConfig):
        if hasattr(theirs, f.name):
            assert getattr(ours, f.name) == getattr(theirs, f.name), f.name
    assert ours.position_embedding_type == "absolute" and not ours.pre_layer_norm and ours.hf_compatible


@pytest.mark.parametrize("bad, match", [
    (dict(hidden_size=100, num_attention_heads=12), "divisible"),
    (dict(hidden_act="gelu2"), "hidden_act"),
    (dict(position_embedding_type="relative_key"), "position_embedding_type"),
    (dict(num_hidden_layers=0), "num_hidden_layers"),
    (dict(hidden_dropout_prob=1.5), "hidden_dropout_prob"),
    (dict(pad_token_id=40000), "pad_token_id"),
    (dict(hidden_size=36, num_attention_heads=4, position_embedding_type="rotary"), "even"),
])
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        BertConfig(**bad)


def test_config_json_both_ways(tmp_path):
    CFG.save_pretrained(tmp_path)
    theirs = transformers.BertConfig.from_pretrained(tmp_path)
    assert theirs.num_labels == 3 and theirs.hidden_size == 32 and theirs.model_type == "bert"
    assert BertConfig.from_pretrained(tmp_path) == CFG
    theirs.save_pretrained(tmp_path / "hf")
    assert BertConfig.from_pretrained(tmp_path / "hf") == CFG
    assert BertConfig.from_hf(CFG.to_hf()) == CFG


def test_model_needs_our_config():
    with pytest.raises(TypeError, match="BertConfig"):
        BertModel(transformers.BertConfig())


# ---------------------------------------------------------------- models and heads

def test_init_like_hf():
    torch.manual_seed(0)
    model = BertModel(dataclasses.replace(CFG, hidden_size=64, intermediate_size=256))
    w = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, torch.nn.Linear)])
    assert abs(w.std().item() - 0.02) < 1e-3 and abs(w.mean().item()) < 1e-3
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            assert (m.bias == 0).all()
        if isinstance(m, torch.nn.LayerNorm):
            assert (m.weight == 1).all() and (m.bias == 0).all()
    assert (model.embeddings.word_embeddings.weight[0] == 0).all()


def test_mlm_head_is_tied_and_ignores_minus_100(inputs):
    torch.manual_seed(0)
    model = BertForMaskedLM(CFG)
    assert not any("decoder" in n for n, _ in model.named_parameters())
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[:, 1] = inputs["input_ids"][:, 1]
    out = model(**inputs, labels=labels)
    assert out.logits.shape == (*inputs["input_ids"].shape, 150)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits[:, 1], labels[:, 1]))
    out.loss.backward()
    assert model.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="labels"):
        model(**inputs, labels=labels[:, :3])


def test_classification_losses(inputs):
    torch.manual_seed(0)
    clf = BertForSequenceClassification(CFG).eval()
    y = torch.tensor([0, 2, 1, 1])
    out = clf(**inputs, labels=y)
    assert out.logits.shape == (4, 3) and torch.allclose(out.loss, F.cross_entropy(out.logits, y))
    multi = torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 1], [0, 0, 0]])
    out = clf(**inputs, labels=multi)
    assert torch.allclose(out.loss, F.binary_cross_entropy_with_logits(out.logits, multi))
    reg = BertForSequenceClassification(dataclasses.replace(CFG, num_labels=1)).eval()
    target = torch.tensor([0.1, 2.0, -1.0, 0.5])
    out = reg(**inputs, labels=target)
    assert out.logits.shape == (4, 1) and torch.allclose(out.loss, F.mse_loss(out.logits[:, 0], target))


@pytest.mark.parametrize("kind, pre", [("sinusoidal", False), ("rotary", False), ("absolute", True),
                                       ("rotary", True)])
def test_variants_run_save_and_load(tmp_path, inputs, kind, pre):
    cfg = dataclasses.replace(CFG, position_embedding_type=kind, pre_layer_norm=pre)
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).eval()
    out = model(**inputs)
    assert out.logits.shape == (4, 3)
    model.save_pretrained(tmp_path)
    again = BertForSequenceClassification.from_pretrained(tmp_path)
    assert again.config == cfg
    assert torch.allclose(again(**inputs).logits, out.logits, atol=1e-6)
    with pytest.raises(ValueError, match="post-LN"):
        model.to_hf()


def test_mean_pooling_ignores_padding():
    h = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = mean_pooling(h, mask)
    assert torch.allclose(pooled[0], h[0, :3].mean(0)) and torch.allclose(pooled[1], h[1].mean(0))


def test_padding_does_not_change_real_tokens(inputs):
    torch.manual_seed(0)
    model = BertModel(CFG).eval()
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    full = model(ids, mask).last_hidden_state
    n = int(mask[1].sum())
    alone = model(ids[1:2, :n], mask[1:2, :n], inputs["token_type_ids"][1:2, :n]).last_hidden_state
    batched = model(ids[1:2, :n], token_type_ids=inputs["token_type_ids"][1:2, :n]).last_hidden_state
    assert torch.allclose(alone, batched, atol=1e-6)
    assert torch.allclose(model(**inputs).last_hidden_state[1, :n], alone[0], atol=1e-5)
    assert full.shape == (*ids.shape, 32)


# ---------------------------------------------------------------- HF interop

@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_from_hf_and_to_hf(inputs, impl, cls):
    torch.manual_seed(1)
    hf = getattr(transformers, cls.hf_class)(CFG.to_hf(attn_implementation=impl)).eval()
    ours = cls.from_hf(hf)
    assert not ours.training
    with torch.no_grad():
        expected = hf(**inputs, output_hidden_states=True)
        got = ours(**inputs, output_hidden_states=True)
        back = ours.to_hf(attn_implementation=impl)(**inputs)
    mask = inputs["attention_mask"]
    assert max_err(got, expected, mask) < 1e-5
    assert max_err(back, expected, mask) < 1e-5
    hidden = got.hidden_states
    assert len(hidden) == len(expected.hidden_states) == CFG.num_hidden_layers + 1
    for a, b in zip(hidden, expected.hidden_states):
        assert (a - b)[mask.bool()].abs().max() < 1e-5
    if cls is BertModel:
        assert (got.pooler_output - expected.pooler_output).abs().max() < 1e-5


def test_attention_weights_match_eager(inputs):
    torch.manual_seed(1)
    hf = transformers.BertModel(CFG.to_hf(attn_implementation="eager")).eval()
    ours = BertModel.from_hf(hf)
    with torch.no_grad():
        a = ours(**inputs, output_attentions=True).attentions
        b = hf(**inputs, output_attentions=True).attentions
    assert len(a) == len(b) == 2 and all((x - y).abs().max() < 1e-5 for x, y in zip(a, b))


def test_losses_match_hf(inputs):
    torch.manual_seed(3)
    hf = transformers.BertForSequenceClassification(CFG.to_hf()).eval()
    ours = BertForSequenceClassification.from_hf(hf)
    y = torch.tensor([2, 0, 1, 2])
    assert torch.allclose(ours(**inputs, labels=y).loss, hf(**inputs, labels=y).loss, atol=1e-6)
    hf_mlm = transformers.BertForMaskedLM(CFG.to_hf()).eval()
    mlm = BertForMaskedLM.from_hf(hf_mlm)
    labels = torch.where(torch.rand(inputs["input_ids"].shape) < 0.3, inputs["input_ids"], -100)
    assert torch.allclose(mlm(**inputs, labels=labels).loss, hf_mlm(**inputs, labels=labels).loss, atol=1e-5)


def test_key_mapping_is_one_to_one():
    mlm = BertForMaskedLM(CFG)
    hf_keys = [k for k in transformers.BertForMaskedLM(CFG.to_hf()).state_dict()
               if not k.startswith("cls.predictions.decoder.")]
    assert sorted(to_hf_key(k) for k in mlm.state_dict()) == sorted(hf_keys)
    assert all(to_hf_key(from_hf_key(k)) == k for k in hf_keys)
    assert from_hf_key("bert.encoder.layer.3.output.LayerNorm.gamma") == "bert.encoder.layer.3.feed_forward_norm.weight"


def test_cross_class_loading(inputs):
    torch.manual_seed(4)
    hf_mlm = transformers.BertForMaskedLM(CFG.to_hf()).eval()
    with pytest.warns(UserWarning, match="pooler"):
        base = BertModel.from_hf(hf_mlm)                    # the encoder of an MLM model; no pooler in it
    with torch.no_grad():
        expected = hf_mlm.bert(**inputs).last_hidden_state
        assert max_err(base(**inputs), type("O", (), {"last_hidden_state": expected})(), inputs["attention_mask"]) < 1e-5
    with pytest.warns(UserWarning, match="classifier"):
        BertForSequenceClassification.from_hf(transformers.BertModel(CFG.to_hf()))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_files_both_ways(tmp_path, inputs, cls):
    torch.manual_seed(5)
    ours = cls(CFG).eval()
    ours.save_pretrained(tmp_path / "ours")
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["config.json", "model.safetensors"]
    hf = getattr(transformers, cls.hf_class).from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert max_err(hf(**inputs), ours(**inputs), inputs["attention_mask"]) < 1e-5
    hf.save_pretrained(tmp_path / "hf")
    again = cls.from_pretrained(tmp_path / "hf")
    assert not again.training
    with torch.no_grad():
        assert max_err(again(**inputs), ours(**inputs), inputs["attention_mask"]) < 1e-5


def test_old_pytorch_model_bin(tmp_path, inputs):
    torch.manual_seed(6)
    hf = transformers.BertForPreTraining(CFG.to_hf()).eval()
    sd = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
          for k, v in hf.state_dict().items()}
    torch.save(sd, tmp_path / "pytorch_model.bin")
    CFG.to_hf().save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # NSP and MLM heads are skipped without a warning
        ours = BertModel.from_pretrained(tmp_path)
    with torch.no_grad():
        expected = hf.bert(**inputs)
        got = ours(**inputs)
    assert (got.pooler_output - expected.pooler_output).abs().max() < 1e-5
    mlm = BertForMaskedLM.from_pretrained(tmp_path)
    with torch.no_grad():
        assert (mlm(**inputs).logits - hf(**inputs).prediction_logits).abs().max() < 1e-4


def test_from_pretrained_config_overrides(tmp_path):
    BertForSequenceClassification(CFG).save_pretrained(tmp_path)
    base = BertModel(CFG)
    base.save_pretrained(tmp_path / "base")
    with pytest.warns(UserWarning, match="classifier"):
        clf = BertForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=7)
    assert clf.classifier.out_features == 7 and clf.config.num_labels == 7
    assert torch.equal(clf.bert.pooler.dense.weight, base.pooler.dense.weight)    # a bare model's pooler loads too
    with pytest.raises(ValueError, match="shape"):
        BertForSequenceClassification.from_pretrained(tmp_path, num_labels=7)


def test_file_errors(tmp_path):
    good = BertModel(CFG).save_pretrained(tmp_path / "good")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        BertModel.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        BertModel.from_pretrained(tmp_path / "empty")
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / "config.json").write_text("{oops")
    with pytest.raises(ValueError, match="JSON"):
        BertModel.from_pretrained(tmp_path / "badjson")
    (tmp_path / "noweights").mkdir()
    CFG.save_pretrained(tmp_path / "noweights")
    with pytest.raises(FileNotFoundError, match="no weights"):
        BertModel.from_pretrained(tmp_path / "noweights")
    (tmp_path / "truncated").mkdir()
    CFG.save_pretrained(tmp_path / "truncated")
    (tmp_path / "truncated" / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(ValueError, match="cannot read"):
        BertModel.from_pretrained(tmp_path / "truncated")
    (tmp_path / "garbage").mkdir()
    CFG.save_pretrained(tmp_path / "garbage")
    (tmp_path / "garbage" / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        BertModel.from_pretrained(tmp_path / "garbage")
    (tmp_path / "other").mkdir()
    dataclasses.replace(CFG, intermediate_size=40).save_pretrained(tmp_path / "other")
    (tmp_path / "other" / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="shape"):
        BertModel.from_pretrained(tmp_path / "other")
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="not BERT"):
        BertModel.from_pretrained(tmp_path / "gpt")


def test_missing_encoder_weights_is_an_error():
    model = BertModel(CFG)
    sd = {k: v for k, v in model.state_dict().items() if "layer.1." not in k}
    with pytest.raises(ValueError, match="lacks"):
        model.load_hf_state_dict(sd)


# ---------------------------------------------------------------- input errors

@pytest.mark.parametrize("make, error, match", [
    (lambda: torch.ones(1, 25, dtype=torch.long), ValueError, "max_position_embeddings"),
    (lambda: torch.tensor([[1, 150]]), ValueError, "outside the vocabulary"),
    (lambda: torch.tensor([[1, -2]]), ValueError, "outside the vocabulary"),
    (lambda: torch.tensor([[1.0, 2.0]]), TypeError, "integer"),
    (lambda: [[1, 2]], TypeError, "tensor"),
    (lambda: torch.tensor([1, 2]), ValueError, "batch, seq"),
])
def test_bad_input_ids(make, error, match):
    with pytest.raises(error, match=match):
        BertModel(CFG)(make())


def test_bad_masks_and_segments():
    model = BertModel(CFG)
    ids = torch.ones(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids, attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="token_type_ids"):
        model(ids, token_type_ids=torch.ones(2, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="type_vocab_size"):
        model(ids, token_type_ids=torch.full((2, 5), 2))


# ---------------------------------------------------------------- counts

def test_bert_base_parameter_count():
    cfg = BertConfig()
    with torch.device("meta"):
        model = BertModel(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert n == sum(parameter_counts(cfg).values()) == 109_482_240
    small = dataclasses.replace(CFG, pre_layer_norm=True, position_embedding_type="sinusoidal")
    assert sum(p.numel() for p in BertModel(small).parameters()) == sum(parameter_counts(small).values())


def test_flops_formula_matches_counter():
    from torch.utils.flop_counter import FlopCounterMode
    with torch.device("meta"):
        model = BertModel(CFG)
    for L in (8, 24):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model.encoder(torch.empty(2, L, CFG.hidden_size, device="meta"))
        assert counter.get_total_flops() == 2 * L * flops_per_token(CFG, L)
