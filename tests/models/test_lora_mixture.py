"""MoLoRec's product merge (spec §3.5) on a TINY randomly initialised Llama ("architecture only":
the real peft/transformers code path, no pretrained weights). Both adapters are random (B != 0), with
different α so the per-adapter scalings differ."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from recplat.errors import ConfigError
from recplat.models.lora_mixture import (
    GENERAL,
    SPECIFIC,
    LoraMixture,
    export_cat_adapter,
    load_adapter_pair,
    merge_lora_factors,
    merge_lora_products,
)

TARGETS = ["q_proj", "v_proj", "down_proj"]


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    return LlamaForCausalLM(config).eval()


def save_random_adapter(directory, rank: int, alpha: float, seed: int):
    model = get_peft_model(tiny_llama(), LoraConfig(r=rank, lora_alpha=alpha, target_modules=TARGETS,
                                                    init_lora_weights=False))  # fmt: skip
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.3)
    model.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def adapter_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {
        "general": save_random_adapter(root / "general", rank=4, alpha=8, seed=1),
        "specific": save_random_adapter(root / "specific", rank=4, alpha=4, seed=2),
        "specific_r2": save_random_adapter(root / "specific_r2", rank=2, alpha=6, seed=3),
    }


def mixture_of(dirs, specific="specific", seed=None) -> LoraMixture:
    mixture = LoraMixture(load_adapter_pair(tiny_llama(), dirs["general"], dirs[specific]))
    if seed is not None:  # a different w in every module
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in mixture.logits.values():
                p.normal_(0, 1.5)
    return mixture


def explicit_delta(directory, module: str) -> torch.Tensor:
    """(α/r) B A of `module`, read straight from the saved adapter files."""
    cfg = json.loads((directory / "adapter_config.json").read_text())
    weights = load_file(str(directory / "adapter_model.safetensors"))
    a, b = weights[f"{module}.lora_A.weight"], weights[f"{module}.lora_B.weight"]
    return cfg["lora_alpha"] / cfg["r"] * (b @ a)


IDS = torch.tensor([[1, 5, 9, 33, 70, 2, 100, 7], [4, 4, 18, 90, 3, 61, 12, 8]])


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.mark.parametrize("specific", ["specific", "specific_r2"])
def test_product_merge_equals_explicit_sum_of_scaled_products(adapter_dirs, specific):
    mixture = mixture_of(adapter_dirs, specific, seed=0)
    merged = merge_lora_products(mixture)
    assert len(merged) == 2 * len(TARGETS)
    x = torch.randn(5, 64)
    for name, layer in mixture.layers.items():
        w = mixture.module_weights()[name]
        assert 0.0 < w[0] < 1.0 and w.sum().item() == pytest.approx(1.0)
        expected = w[0] * explicit_delta(adapter_dirs["general"], name) + w[1] * explicit_delta(adapter_dirs[specific], name)
        torch.testing.assert_close(merged[name], expected, rtol=1e-5, atol=1e-6)
        # and the module's forward (both adapters active, hooks scaling them) adds exactly x ΔWᵀ
        xin = x[:, : layer.in_features]
        with torch.no_grad():
            added = layer(xin) - layer.get_base_layer()(xin)
        torch.testing.assert_close(added, xin @ expected.T, rtol=1e-4, atol=1e-5)
    assert len({tuple(w.tolist()) for w in mixture.module_weights().values()}) == len(merged)  # per module


def test_initial_weights_are_half_half(adapter_dirs):
    mixture = mixture_of(adapter_dirs)
    assert mixture.mean_weights() == pytest.approx([0.5, 0.5])
    assert all(p.dtype == torch.float32 for p in mixture.logits.values())


def test_weights_one_zero_give_the_general_adapter_alone(adapter_dirs):
    mixture = mixture_of(adapter_dirs)
    mixture.set_weights((1.0, 0.0))
    general_only = PeftModel.from_pretrained(tiny_llama(), str(adapter_dirs["general"]))
    torch.testing.assert_close(logits(mixture.model.base_model.model), logits(general_only), rtol=0, atol=1e-6)
    bare = tiny_llama()
    assert (logits(general_only) - logits(bare)).abs().max() > 0.05  # the adapter does change outputs
    mixture.set_weights((0.0, 1.0))
    specific_only = PeftModel.from_pretrained(tiny_llama(), str(adapter_dirs["specific"]))
    torch.testing.assert_close(logits(mixture.model.base_model.model), logits(specific_only), rtol=0, atol=1e-6)


@pytest.mark.parametrize("specific", ["specific", "specific_r2"])
def test_exported_cat_adapter_loads_in_plain_peft_with_the_same_outputs(adapter_dirs, specific, tmp_path):
    mixture = mixture_of(adapter_dirs, specific, seed=1)
    out = export_cat_adapter(mixture, tmp_path / "merged")
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == 4 + (2 if specific == "specific_r2" else 4) and cfg["lora_alpha"] == cfg["r"]
    plain = PeftModel.from_pretrained(tiny_llama(), str(out))
    torch.testing.assert_close(logits(plain), logits(mixture.model.base_model.model), rtol=1e-5, atol=1e-5)
    merged = merge_lora_products(mixture)
    for name in mixture.layers:  # and its ΔW is the product merge's
        layer = dict(plain.named_modules())[name]
        torch.testing.assert_close(layer.get_delta_weight("default"), merged[name], rtol=1e-5, atol=1e-6)


def test_peft_linear_weighted_adapter_is_not_the_product_merge(adapter_dirs):
    """Why we do not use peft's add_weighted_adapter(linear): it mixes A and B separately."""
    mixture = mixture_of(adapter_dirs)  # w = (.5, .5) everywhere
    products = merge_lora_products(mixture)
    mixture.model.add_weighted_adapter([GENERAL, SPECIFIC], [0.5, 0.5], "linear_mix", combination_type="linear")
    errors = []
    for name, layer in mixture.layers.items():
        peft_delta = layer.get_delta_weight("linear_mix").float()
        errors.append(((peft_delta - products[name]).norm() / products[name].norm()).item())
    assert min(errors) > 0.3, errors  # off by 30-100 %, not rounding


def test_factor_merge_carries_the_cross_terms(adapter_dirs):
    mixture = mixture_of(adapter_dirs, seed=2)
    factors, products = merge_lora_factors(mixture), merge_lora_products(mixture)
    for name, (a, b) in factors.items():
        wg, ws = mixture.module_weights()[name]
        layer = mixture.layers[name]
        ag, bg, sg = layer.lora_A[GENERAL].weight, layer.lora_B[GENERAL].weight, layer.scaling[GENERAL]
        as_, bs, ss = layer.lora_A[SPECIFIC].weight, layer.lora_B[SPECIFIC].weight, layer.scaling[SPECIFIC]
        expected = (wg**2 * sg * bg @ ag + ws**2 * ss * bs @ as_ + wg * ws * (sg * bg @ as_ + ss * bs @ ag)).detach()
        torch.testing.assert_close(b @ a, expected, rtol=1e-5, atol=1e-6)
        assert ((b @ a) - products[name]).norm() > 0.1 * products[name].norm()
    mixture.set_weights((1.0, 0.0))  # with one adapter the two merges agree
    for name, (a, b) in merge_lora_factors(mixture).items():
        torch.testing.assert_close(b @ a, merge_lora_products(mixture)[name], rtol=1e-5, atol=1e-6)


def test_gradients_reach_only_the_mixture_logits(adapter_dirs):
    mixture = mixture_of(adapter_dirs)
    model = mixture.model.base_model.model
    assert [n for n, p in model.named_parameters() if p.requires_grad] == []
    model(input_ids=IDS).logits.logsumexp(-1).mean().backward()
    grads = [p.grad for p in mixture.logits.values()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in model.parameters())
    assert [n for n, _ in mixture.named_parameters()] == [f"logits.{k}" for k in mixture.logits]


def test_bad_inputs_are_config_errors(adapter_dirs, tmp_path):
    with pytest.raises(ConfigError, match="no adapter_config.json"):
        load_adapter_pair(tiny_llama(), adapter_dirs["general"], tmp_path)
    mixture = mixture_of(adapter_dirs)
    with pytest.raises(ConfigError, match="summing to 1"):
        mixture.set_weights((0.7, 0.7))
    with pytest.raises(ConfigError, match="one per adapter"):
        LoraMixture(mixture.model, init=(1.0,))
