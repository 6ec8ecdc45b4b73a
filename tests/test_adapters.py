"""LoRA helpers: per-architecture targets, exact trainable counts, save/load round trip."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import AutoModel

from recplat.adapters import (
    apply_lora,
    count_parameters,
    default_target_modules,
    load_adapter,
    lora_config,
    save_adapter,
)
from recplat.errors import ConfigError
from tests.models.backbones import minilm_dir, tiny_opt

MINILM_PARAMS = 22_713_216


def _minilm() -> nn.Module:
    return AutoModel.from_pretrained(minilm_dir()).eval()


def _stub(model_type: str) -> nn.Module:
    """A module that only carries `config.model_type`, enough to choose targets."""
    module = nn.Module()
    module.config = SimpleNamespace(model_type=model_type)
    return module


@pytest.mark.parametrize(
    ("model_type", "base", "extra"),
    [
        ("bert", ["query", "value"], ["key", "dense"]),
        ("opt", ["q_proj", "v_proj"], ["k_proj", "out_proj", "fc1", "fc2"]),
        ("t5", ["q", "v"], ["k", "o", "wi", "wo", "wi_0", "wi_1"]),
        ("llama", ["q_proj", "k_proj", "v_proj", "o_proj"], ["gate_proj", "up_proj", "down_proj"]),
        ("qwen2", ["q_proj", "k_proj", "v_proj", "o_proj"], ["gate_proj", "up_proj", "down_proj"]),
        ("deberta-v2", ["query_proj", "value_proj"], ["key_proj", "dense"]),
    ],
)
def test_default_targets_per_architecture(model_type, base, extra):
    assert default_target_modules(_stub(model_type)) == base
    assert default_target_modules(_stub(model_type), extra_targets=True) == base + extra


def test_unknown_architecture_asks_for_target_modules():
    with pytest.raises(ConfigError, match="target_modules"):
        lora_config(_stub("mystery"), rank=4, alpha=8, dropout=0.0)
    cfg = lora_config(_stub("mystery"), rank=4, alpha=8, dropout=0.0, target_modules=["proj"])
    assert set(cfg.target_modules) == {"proj"}


def test_bad_rank_or_dropout_is_a_config_error():
    with pytest.raises(ConfigError, match="rank"):
        lora_config(_stub("bert"), rank=0, alpha=8, dropout=0.0)
    with pytest.raises(ConfigError, match="dropout"):
        lora_config(_stub("bert"), rank=4, alpha=8, dropout=1.0)


def test_lora_on_minilm_trains_exactly_the_adapter_parameters():
    model = _minilm()
    assert count_parameters(model) == (MINILM_PARAMS, MINILM_PARAMS)  # full fine-tuning: all trainable
    peft_model = apply_lora(model, lora_config(model, rank=4, alpha=8, dropout=0.1))
    expected = 6 * 2 * (384 * 4 + 4 * 384)  # layers x {query, value} x (A: 384->4, B: 4->384) = 36,864
    assert count_parameters(peft_model) == (expected, MINILM_PARAMS + expected)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert len(trainable) == 6 * 2 * 2 and all("lora_" in n for n in trainable)


def test_lora_on_tiny_opt_targets_q_and_v():
    """Architecture only: a tiny random OPT (2 layers, hidden 32)."""
    peft_model = apply_lora(tiny_opt(), lora_config(tiny_opt(), rank=2, alpha=4, dropout=0.0))
    assert count_parameters(peft_model)[0] == 2 * 2 * (32 * 2 + 2 * 32)


def test_save_and_load_adapter_round_trip(tmp_path):
    model = _minilm()
    peft_model = apply_lora(model, lora_config(model, rank=4, alpha=8, dropout=0.0))
    torch.manual_seed(0)
    with torch.no_grad():  # B starts at zero (adapter = identity); make it matter
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)
    directory = save_adapter(peft_model, tmp_path / "adapter")
    assert (directory / "adapter_model.safetensors").is_file()
    inputs = {"input_ids": torch.tensor([[101, 7592, 2088, 102]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    with torch.no_grad():
        expected = peft_model(**inputs).last_hidden_state
        base_only = _minilm()(**inputs).last_hidden_state
        loaded = load_adapter(_minilm(), directory)
        actual = loaded(**inputs).last_hidden_state
    assert not torch.allclose(expected, base_only)
    torch.testing.assert_close(actual, expected)
    assert count_parameters(loaded)[0] == 0  # loaded frozen unless trainable=True


def test_load_adapter_names_a_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="adapter_config.json"):
        load_adapter(_stub("bert"), tmp_path)
