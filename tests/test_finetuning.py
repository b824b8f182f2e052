"Fine-tuning tools (chapter 7): freezing, layer-wise learning rates, LoRA and its merge, error groups."
import math

import pytest
import torch
from torch import nn

from encoder_book.bert import BertConfig, BertForSequenceClassification
from encoder_book.core import set_seed, tiny_sentiment
from encoder_book.data import LabelledData, tokenize_dataset
from encoder_book.finetuning import (
    LoRALinear,
    add_lora,
    attention_maps,
    count_parameters,
    error_groups,
    finetune,
    freeze_encoder,
    layerwise_lr_decay,
    merge_lora,
)
from encoder_book.tokenizer import WordPieceTokenizer
from encoder_book.train import TrainConfig, make_optimizer, param_groups


def small(layers: int = 3) -> BertForSequenceClassification:
    set_seed(0)
    return BertForSequenceClassification(BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=layers,
                                                    num_attention_heads=2, intermediate_size=32,
                                                    max_position_embeddings=32))


def test_count_parameters_counts_tied_tensors_once():
    m = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    m[1].weight = m[0].weight
    m[1].bias.requires_grad_(False)
    assert count_parameters(m) == (12, 15)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_freeze_encoder_trains_top_k_layers_and_head(k):
    m = freeze_encoder(small(3), k)
    for name, p in m.named_parameters():
        top = any(name.startswith(f"bert.encoder.layer.{i}.") for i in range(3 - k, 3))
        head = name.startswith(("bert.pooler.", "classifier."))
        assert p.requires_grad == (top or head), name


def test_freeze_encoder_rejects_bad_k():
    with pytest.raises(ValueError, match="between 0 and 3"):
        freeze_encoder(small(3), 4)
    with pytest.raises(ValueError):
        freeze_encoder(small(3), -1)


def test_layerwise_lr_decay_groups_and_learning_rates():
    m = small(2)
    scales = layerwise_lr_decay(m, 0.5)
    assert scales["classifier.weight"] == 1.0 and scales["bert.pooler.dense.weight"] == 1.0
    assert scales["bert.encoder.layer.1.attention.query.weight"] == 0.5
    assert scales["bert.encoder.layer.0.feed_forward.output.bias"] == 0.25
    assert scales["bert.embeddings.word_embeddings.weight"] == 0.125
    assert all(not hasattr(p, "lr_scale") for p in m.parameters())  # no side channel
    cfg = TrainConfig(lr=0.1, weight_decay=0.01, progress=False, device="cpu")
    groups = param_groups(m, cfg.weight_decay, lr_scales=scales)
    opt, sched = make_optimizer(m, cfg, 10, groups)
    lrs = {}
    for g in opt.param_groups:
        for p in g["params"]:
            lrs[id(p)] = g["initial_lr"]
            assert g["weight_decay"] == (0.0 if p.ndim < 2 else 0.01)
    for name, p in m.named_parameters():
        assert math.isclose(lrs[id(p)], 0.1 * scales[name]), name
    with pytest.raises(ValueError):
        layerwise_lr_decay(m, 0.0)


def test_param_groups_without_scales_are_unchanged():
    groups = param_groups(small(1), 0.01)
    assert len(groups) == 2 and [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert all("lr_scale" not in g for g in groups)


def test_lora_starts_exact_trains_only_adapters_and_merges_exactly():
    m = small(2).eval()
    x = torch.randint(5, 60, (3, 7))
    with torch.no_grad():
        before = m(x).logits
    add_lora(m, r=2, alpha=4)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert all("lora_" in n or n.startswith(("bert.pooler.", "classifier.")) for n in trainable)
    assert count_parameters(m)[0] == 2 * 4 * 2 * (16 + 16) + 16 * 16 + 16 + 16 * 2 + 2
    with torch.no_grad():
        assert torch.equal(m(x).logits, before)             # B = 0: the same model at the start
    # a training step changes the adapters, and gradients reach A through the fused q/k/v path
    m.train()
    loss = m(x, labels=torch.tensor([0, 1, 0])).loss
    loss.backward()
    q = m.bert.encoder.layer[0].attention.query
    assert isinstance(q, LoRALinear) and q.lora_B.grad is not None and q.lora_B.grad.abs().sum() > 0
    assert q.base.weight.grad is None
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, LoRALinear):
                mod.lora_B.normal_(0, 0.5)
    m.eval()
    with torch.no_grad():
        adapted = m(x).logits
        merge_lora(m)
        merged = m(x).logits
    assert not torch.allclose(adapted, before, atol=1e-4)
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-5)
    assert all(type(mod) is not LoRALinear for mod in m.modules())


def test_add_lora_bad_arguments():
    with pytest.raises(ValueError, match="unknown LoRA targets"):
        add_lora(small(1), targets=("query", "dense"))
    with pytest.raises(ValueError, match="rank"):
        add_lora(small(1), r=0)
    m = add_lora(small(1))
    with pytest.raises(ValueError, match="already"):
        add_lora(m)


@pytest.mark.parametrize("strategy", ["full", "probe", "top", "llrd", "lora"])
def test_finetune_strategies_run_and_report(tmp_path, strategy):
    texts, labels = tiny_sentiment()
    tok = WordPieceTokenizer.train(texts, vocab_size=80)
    data = tokenize_dataset(tok, LabelledData(texts, labels))
    set_seed(0)
    m = BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=32))
    cfg = TrainConfig(lr=1e-3, max_steps=3, batch_size=8, save_every=None, progress=False, device="cpu")
    r = finetune(m, data, data, strategy, cfg, k=1)
    assert r["strategy"] == strategy and 0 <= r["dev_accuracy"] <= 1 and r["train_seconds"] > 0
    assert (r["trainable"] == r["total"]) == (strategy in ("full", "llrd"))
    assert all(not hasattr(p, "lr_scale") for p in m.parameters())
    assert all(p.requires_grad for p in m.parameters())
    assert all(type(mod) is not LoRALinear for mod in m.modules())
    with pytest.raises(ValueError, match="strategy"):
        finetune(m, data, data, "adapters", cfg)


def test_attention_maps_shape_and_rows():
    texts, _ = tiny_sentiment()
    tok = WordPieceTokenizer.train(texts, vocab_size=80)
    set_seed(0)
    m = BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=32)).train()
    tokens, maps = attention_maps(m, tok, texts[0])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and maps.shape == (2, 2, len(tokens), len(tokens))
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 2, len(tokens)))
    assert m.training                                        # the mode is restored


def test_error_groups():
    texts = ["it is not good", "good but long", "great", "bad film , but i did n't hate it"]
    rows = {r["group"]: r for r in error_groups(texts, [0, 1, 1, 1], [0, 0, 1, 0])}
    assert rows["all"]["sentences"] == 4 and rows["all"]["errors"] == 2 and rows["all"]["accuracy"] == 0.5
    assert rows["negation"]["sentences"] == 2 and rows["negation"]["errors"] == 1
    assert rows["contrast"]["sentences"] == 2 and rows["contrast"]["errors"] == 2
    assert rows["contrast"]["share_of_errors"] == 1.0
    assert rows["negation and contrast"]["sentences"] == 1 and rows["neither"]["sentences"] == 1


def test_real_budgets_small_sets_and_sst2(monkeypatch):
    "The real (not quick) defaults: small sets get more LSTM steps and rate; SST-2 keeps its recipe."
    import encoder_book.finetuning as ft
    monkeypatch.setattr(ft, "QUICK", False)
    sst2 = 65_349  # SST-2's training file less the validation slice
    lstm_big = ft.choose_defaults("lstm", sst2, [13] * sst2, "cpu")
    assert lstm_big["epochs"] == 2 and lstm_big["lr"] == ft.BUDGET["lstm"][5] == 4e-3
    assert ft.choose_defaults("transformer", sst2, [13] * sst2, "cpu")["epochs"] == 3
    lstm_small = ft.choose_defaults("lstm", 7_624, [16] * 7_624, "cpu")
    assert lstm_small["steps"] >= 2000 and lstm_small["lr"] == ft.LSTM_SMALL_SET_LR
    assert ft.choose_defaults("lstm", ft.SMALL_SET + 1, [16] * 10, "cpu")["lr"] == 4e-3
    assert ft.choose_defaults("lstm", 7_624, [16] * 10, "cpu", lr=0.5)["lr"] == 0.5  # given wins
    assert ft.choose_defaults("bow", 7_624, [16] * 10, "cpu")["lr"] == 0.1
